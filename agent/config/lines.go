package config

import "strings"

// lineIndex maps TOML key paths ("bolts.stats.input") to the line where they
// are written. BurntSushi/toml keeps key positions private, so the file is
// scanned once more here: table headers, keys (bare, quoted and dotted), and
// the multi-line strings and arrays that must be skipped over. The scan is
// only used to point at lines in error messages; it never decides meaning.
type lineIndex map[string]int

func indexLines(text string) lineIndex {
	idx := lineIndex{}
	var (
		table   []string
		inStr   string // closing delimiter of the open multi-line string
		depth   int    // open [ and { of a multi-line value
		lineNum int
	)
	for _, line := range strings.Split(text, "\n") {
		lineNum++
		rest := line
		if inStr != "" {
			i := strings.Index(rest, inStr)
			if i < 0 {
				continue
			}
			rest, inStr = rest[i+len(inStr):], ""
		}
		if depth > 0 || rest != line {
			depth, inStr = scanValue(rest, depth)
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "["):
			h := strings.TrimPrefix(t, "[[")
			if len(h) == len(t) {
				h = strings.TrimPrefix(t, "[")
			}
			if j := strings.IndexByte(h, ']'); j >= 0 {
				h = h[:j]
			}
			table = splitKey(h)
			setLine(idx, table, lineNum)
		default:
			eq := keyEnd(t)
			if eq < 0 {
				continue
			}
			path := append(append([]string(nil), table...), splitKey(t[:eq])...)
			setLine(idx, path, lineNum)
			depth, inStr = scanValue(t[eq+1:], 0)
		}
	}
	return idx
}

func setLine(idx lineIndex, path []string, line int) {
	k := strings.Join(path, ".")
	if _, ok := idx[k]; !ok {
		idx[k] = line
	}
	// Intermediate tables of a dotted key or header point at the first line
	// that mentions them.
	for i := len(path) - 1; i > 0; i-- {
		p := strings.Join(path[:i], ".")
		if _, ok := idx[p]; ok {
			break
		}
		idx[p] = line
	}
}

// keyEnd returns the index of the '=' that ends the key of line t, skipping
// quoted key parts, or -1.
func keyEnd(t string) int {
	var q byte
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '=':
			return i
		case c == '#':
			return -1
		}
	}
	return -1
}

// splitKey splits a dotted key into its parts, unquoting quoted parts.
func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	var q byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// scanValue walks a value (or the rest of a multi-line one) and returns the
// bracket depth still open at the end of the line and the delimiter of a
// multi-line string left open.
func scanValue(v string, depth int) (int, string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case '"', '\'':
			delim := string(c)
			if strings.HasPrefix(v[i:], delim+delim+delim) {
				delim = delim + delim + delim
			}
			j := i + len(delim)
			for {
				k := strings.Index(v[j:], delim)
				if k < 0 {
					if len(delim) == 3 {
						return depth, delim
					}
					return depth, "" // unterminated: the parser will say so
				}
				j += k
				if c == '"' && len(delim) == 1 && escaped(v, j) {
					j++
					continue
				}
				break
			}
			i = j + len(delim) - 1
		}
	}
	return depth, ""
}

func escaped(s string, i int) bool {
	n := 0
	for i--; i >= 0 && s[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// line returns the line of path or of its longest prefix that is written in
// the file, or 0.
func (idx lineIndex) line(path string) int {
	for p := path; p != ""; {
		if n, ok := idx[p]; ok {
			return n
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
