package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSameResultsAsRedis applies one random stream of command records to the
// store and, command by command, to a real redis-server, then compares every
// key: type, hash fields, sorted-set scores, string values, and which
// commands failed (a Redis error must be a reject here, and nothing else).
func TestSameResultsAsRedis(t *testing.T) {
	r := startRedis(t)
	s := openStore(t, filepath.Join(t.TempDir(), "results.db"), nil)

	rng := rand.New(rand.NewPCG(4, 2))
	keys := []string{"h1", "h2", "z1", "z2", "s1"}
	// Each op mostly uses keys of its own type, sometimes any key, so both
	// the normal path and the type errors are exercised.
	pick := func(own ...string) string {
		if rng.IntN(10) == 0 {
			return keys[rng.IntN(len(keys))]
		}
		return own[rng.IntN(len(own))]
	}
	fields := []string{"a", "b", "c"}
	strs := []string{"abc", "5", "1.5", "-2", "7", "10"}
	var recs []string
	var redisErr []bool
	for i := 0; i < 600; i++ {
		f := fields[rng.IntN(len(fields))]
		k := pick("h1", "h2")
		var rec string
		var cmd []string
		switch op := rng.IntN(6); op {
		case 0, 1:
			v := rng.IntN(2001) - 1000
			rec = fmt.Sprintf(`{"op":"hincrby","key":%q,"field":%q,"value":%d}`, k, f, v)
			cmd = []string{"HINCRBY", k, f, strconv.Itoa(v)}
		case 2:
			v := float64(rng.IntN(81)-40) / 4
			rec = fmt.Sprintf(`{"op":"hincrbyfloat","key":%q,"field":%q,"value":%v}`, k, f, v)
			cmd = []string{"HINCRBYFLOAT", k, f, strconv.FormatFloat(v, 'f', -1, 64)}
		case 3:
			v := strs[rng.IntN(len(strs))]
			rec = fmt.Sprintf(`{"op":"hset","key":%q,"field":%q,"value":%q}`, k, f, v)
			cmd = []string{"HSET", k, f, v}
		case 4:
			k = pick("z1", "z2")
			v := float64(rng.IntN(41)-20) / 2
			rec = fmt.Sprintf(`{"op":"zincrby","key":%q,"member":%q,"value":%v}`, k, f, v)
			cmd = []string{"ZINCRBY", k, strconv.FormatFloat(v, 'f', -1, 64), f}
		case 5:
			if rng.IntN(4) > 0 { // keep sets rare so the other types live long enough
				i--
				continue
			}
			k = pick("s1")
			v := strs[rng.IntN(len(strs))]
			rec = fmt.Sprintf(`{"op":"set","key":%q,"value":%q}`, k, v)
			cmd = []string{"SET", k, v}
		}
		recs = append(recs, rec)
		_, err := r.do(cmd...)
		var re redisError
		if err != nil && !errors.As(err, &re) {
			t.Fatal(err)
		}
		redisErr = append(redisErr, err != nil)
	}
	rejects := apply(t, s, "diff", 1, recs...)
	rejected := make([]bool, len(recs))
	for _, rj := range rejects {
		rejected[rj.Index] = true
	}
	nErr := 0
	for i := range recs {
		if rejected[i] != redisErr[i] {
			t.Errorf("record %d %s: redis error=%v, store reject=%v", i, recs[i], redisErr[i], rejected[i])
		}
		if redisErr[i] {
			nErr++
		}
	}
	t.Logf("%d records, %d failed on both sides (WRONGTYPE, not an integer, …)", len(recs), nErr)

	for _, k := range keys {
		typ, err := r.do("TYPE", k)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Scan(k, 1)
		ours := "none"
		if len(info) == 1 && info[0].Key == k {
			ours = info[0].Type
		}
		if typ != ours {
			t.Errorf("%s: redis type %v, store type %s", k, typ, ours)
			continue
		}
		switch ours {
		case TypeHash:
			got, _ := s.HGetAll(k)
			reply, _ := r.do("HGETALL", k)
			want := map[string]string{}
			arr := reply.([]any)
			for i := 0; i+1 < len(arr); i += 2 {
				want[arr[i].(string)] = arr[i+1].(string)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: store %v, redis %v", k, got, want)
			}
		case TypeZSet:
			got, _ := s.ZTop(k, 100)
			reply, _ := r.do("ZREVRANGE", k, "0", "-1", "WITHSCORES")
			arr := reply.([]any)
			var want []ScoredMember
			for i := 0; i+1 < len(arr); i += 2 {
				f, _ := strconv.ParseFloat(arr[i+1].(string), 64)
				want = append(want, ScoredMember{Member: arr[i].(string), Score: f})
			}
			// Equal scores are ordered by member in both, but in opposite
			// directions for a reverse range; compare as sets of pairs.
			if sortedPairs(got) != sortedPairs(want) {
				t.Errorf("%s: store %v, redis %v", k, got, want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Score > got[i-1].Score {
					t.Errorf("%s: ZTop not by descending score: %v", k, got)
				}
			}
		case TypeString:
			got, _, _ := s.Get(k)
			want, _ := r.do("GET", k)
			if got != want {
				t.Errorf("%s: store %q, redis %q", k, got, want)
			}
		}
	}
}

func sortedPairs(m []ScoredMember) string {
	var s []string
	for _, x := range m {
		s = append(s, fmt.Sprintf("%s=%v", x.Member, x.Score))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// --- a minimal RESP client for a redis-server started by the test ---------

type redisConn struct {
	c net.Conn
	r *bufio.Reader
}

type redisError string

func (e redisError) Error() string { return string(e) }

func startRedis(t *testing.T) *redisConn {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server (scripts/test installs it): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			rc := &redisConn{c: c, r: bufio.NewReader(c)}
			t.Cleanup(func() { c.Close() })
			return rc
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not open %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond) // polling for the socket, with a deadline
	}
}

func (r *redisConn) do(args ...string) (any, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := r.c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return r.reply()
}

func (r *redisConn) reply() (any, error) {
	line, err := r.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, redisError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		out := make([]any, 0, max(n, 0))
		for i := 0; i < n; i++ {
			v, err := r.reply()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
