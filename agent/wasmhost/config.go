package wasmhost

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// flattenConfig encodes a plugin's TOML table for sluice_init (ABI.md §4):
// sorted dotted keys with text values, plus "" holding the table as JSON.
func flattenConfig(table map[string]any) ([]byte, error) {
	flat := map[string]string{}
	if err := flatten(flat, "", table); err != nil {
		return nil, err
	}
	if table == nil {
		table = map[string]any{}
	}
	whole, err := json.Marshal(table)
	if err != nil {
		return nil, fmt.Errorf("as JSON: %w", err)
	}
	flat[""] = string(whole)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = appendBytes(out, []byte(k))
		out = appendBytes(out, []byte(flat[k]))
	}
	return out, nil
}

func flatten(dst map[string]string, path string, v any) error {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch v := v.(type) {
	case nil:
		return nil
	case map[string]any:
		for k, x := range v {
			if err := flatten(dst, join(k), x); err != nil {
				return err
			}
		}
	case []map[string]any:
		for i, x := range v {
			if err := flatten(dst, join(strconv.Itoa(i)), x); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := flatten(dst, join(strconv.Itoa(i)), x); err != nil {
				return err
			}
		}
	case []string:
		for i, x := range v {
			dst[join(strconv.Itoa(i))] = x
		}
	case string:
		dst[path] = v
	case bool:
		dst[path] = strconv.FormatBool(v)
	case int:
		dst[path] = strconv.FormatInt(int64(v), 10)
	case int64:
		dst[path] = strconv.FormatInt(v, 10)
	case int32:
		dst[path] = strconv.FormatInt(int64(v), 10)
	case uint64:
		dst[path] = strconv.FormatUint(v, 10)
	case float64:
		dst[path] = strconv.FormatFloat(v, 'g', -1, 64)
	case float32:
		dst[path] = strconv.FormatFloat(float64(v), 'g', -1, 32)
	case time.Time:
		dst[path] = v.Format(time.RFC3339Nano)
	case fmt.Stringer:
		dst[path] = v.String() // toml.LocalDate, LocalTime, LocalDateTime
	default:
		return fmt.Errorf("key %q: unsupported value of type %T", path, v)
	}
	return nil
}
