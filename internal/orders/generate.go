package orders

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// Order is one generated order, as the generator decided it (not parsed).
type Order struct {
	TimeMs     int64 // unix milliseconds
	OrderID    string
	UserID     int64
	SKU        string
	Category   string
	Qty        int64
	PriceCents int64
	City       string
	Status     string
	Payment    string // an extra field the parsers skip, as real logs have
}

// GenConfig configures a Generator. The zero value of each field means its
// default.
type GenConfig struct {
	Seed uint64
	// Start is the time of order 0; default 2026-11-25T12:00:00Z.
	Start time.Time
	// Step is the time between consecutive orders (default 10ms, so 6,000
	// orders per minute window). Times never go backwards.
	Step time.Duration
	// Categories and Cities to draw from (uniformly); defaults are 8
	// categories and 10 cities.
	Categories []string
	Cities     []string
	// SKUs is the number of distinct SKUs (default 200), drawn with a skew
	// towards low numbers so that a top 10 is meaningful.
	SKUs int
	// MalformedEvery makes every Nth line (lines N-1, 2N-1, …) malformed, in
	// one of several ways every parser must reject. 0 means none.
	MalformedEvery int
}

// Default value lists.
var (
	DefaultCategories = []string{"books", "electronics", "clothing", "home", "toys", "sports", "beauty", "grocery"}
	DefaultCities     = []string{"Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Chengdu", "Wuhan", "Nanjing", "Suzhou", "Xiamen"}
	statuses          = []string{"paid", "paid", "paid", "paid", "paid", "paid", "paid", "pending", "cancelled", "refunded"}
	payments          = []string{"alipay", "wechat", "card", "paypal"}
)

// Generator produces order lines deterministically from its config: line i
// is a pure function of (config, i), so any range can be regenerated, in any
// order, by anyone holding the config (a test's ground truth, a resumed
// writer). Safe for concurrent use.
type Generator struct {
	cfg     GenConfig
	startMs int64
	skus    []string
}

// NewGenerator returns a generator for cfg with defaults filled in.
func NewGenerator(cfg GenConfig) *Generator {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	}
	if cfg.Step <= 0 {
		cfg.Step = 10 * time.Millisecond
	}
	if len(cfg.Categories) == 0 {
		cfg.Categories = DefaultCategories
	}
	if len(cfg.Cities) == 0 {
		cfg.Cities = DefaultCities
	}
	if cfg.SKUs <= 0 {
		cfg.SKUs = 200
	}
	g := &Generator{cfg: cfg, startMs: cfg.Start.UnixMilli()}
	for i := 0; i < cfg.SKUs; i++ {
		g.skus = append(g.skus, "sku-"+pad(i, 4))
	}
	return g
}

func pad(v, width int) string {
	s := strconv.Itoa(v)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// splitmix64 turns a counter into well-mixed bits.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Malformed reports whether line i is a malformed one.
func (g *Generator) Malformed(i uint64) bool {
	n := uint64(g.cfg.MalformedEvery)
	return n > 0 && (i+1)%n == 0
}

// MalformedCount is the number of malformed lines among lines [0, n).
func (g *Generator) MalformedCount(n uint64) uint64 {
	if g.cfg.MalformedEvery <= 0 {
		return 0
	}
	return n / uint64(g.cfg.MalformedEvery)
}

// Order returns order i. For a malformed line it returns the order the line
// would have carried; that order is not part of the ground truth.
func (g *Generator) Order(i uint64) Order {
	r := splitmix64(g.cfg.Seed ^ splitmix64(i))
	next := func() uint64 { r = splitmix64(r); return r }
	sku := next() % uint64(len(g.skus))
	if s2 := next() % uint64(len(g.skus)); s2 < sku {
		sku = s2
	}
	return Order{
		TimeMs:     g.startMs + int64(i)*int64(g.cfg.Step)/int64(time.Millisecond),
		OrderID:    "o-" + pad(int(i), 10),
		UserID:     int64(1 + next()%200000),
		SKU:        g.skus[sku],
		Category:   g.cfg.Categories[next()%uint64(len(g.cfg.Categories))],
		Qty:        int64(1 + next()%5),
		PriceCents: int64(99 + next()%49901),
		City:       g.cfg.Cities[next()%uint64(len(g.cfg.Cities))],
		Status:     statuses[next()%uint64(len(statuses))],
		Payment:    payments[next()%uint64(len(payments))],
	}
}

// AppendLine appends line i, terminated by '\n'. A well-formed line is
// about 200 bytes.
func (g *Generator) AppendLine(dst []byte, i uint64) []byte {
	o := g.Order(i)
	start := len(dst)
	dst = AppendOrderJSON(dst, &o)
	if g.Malformed(i) {
		dst = g.spoil(dst, start, i)
	}
	return append(dst, '\n')
}

// AppendOrderJSON appends o as one JSON object in the log's field order.
func AppendOrderJSON(dst []byte, o *Order) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = time.UnixMilli(o.TimeMs).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(dst, `","order_id":"`...)
	dst = append(dst, o.OrderID...)
	dst = append(dst, `","user_id":`...)
	dst = strconv.AppendInt(dst, o.UserID, 10)
	dst = append(dst, `,"sku":"`...)
	dst = append(dst, o.SKU...)
	dst = append(dst, `","category":"`...)
	dst = append(dst, o.Category...)
	dst = append(dst, `","qty":`...)
	dst = strconv.AppendInt(dst, o.Qty, 10)
	dst = append(dst, `,"price":`...)
	dst = appendCents(dst, o.PriceCents)
	dst = append(dst, `,"city":"`...)
	dst = append(dst, o.City...)
	dst = append(dst, `","status":"`...)
	dst = append(dst, o.Status...)
	dst = append(dst, `","payment":"`...)
	dst = append(dst, o.Payment...)
	return append(dst, `"}`...)
}

// malformedKinds are the ways a line is spoiled; each breaks a different rule
// of the format.
var malformedKinds = []func(line []byte) []byte{
	func(l []byte) []byte { return l[:len(l)/2] }, // truncated mid-line
	func(l []byte) []byte { return []byte("ERROR order service restarted") },
	func(l []byte) []byte { return replace(l, `,"price":`, `,"prise":`) },
	func(l []byte) []byte { return replace(l, `"qty":`, `"qty":"two","was":`) },
	func(l []byte) []byte { return replace(l, `"ts":"2`, `"ts":"2026-13-45T99:00:00Z","old_ts":"2`) },
	func(l []byte) []byte { return replace(l, `"price":`, `"price":-`) },
	func(l []byte) []byte { return replace(l, `"category":"`, `"category":"","old_category":"`) },
	func(l []byte) []byte { return replace(l, `,"city":`, `5,"city":`) }, // a third decimal
}

func (g *Generator) spoil(dst []byte, start int, i uint64) []byte {
	line := append([]byte(nil), dst[start:]...)
	kind := (i / uint64(g.cfg.MalformedEvery)) % uint64(len(malformedKinds))
	return append(dst[:start], malformedKinds[kind](line)...)
}

func replace(l []byte, old, repl string) []byte {
	s := string(l)
	for k := 0; k+len(old) <= len(s); k++ {
		if s[k:k+len(old)] == old {
			return []byte(s[:k] + repl + s[k+len(old):])
		}
	}
	return l
}

// AppendLines appends lines [from, to), each terminated by '\n'.
func (g *Generator) AppendLines(dst []byte, from, to uint64) []byte {
	for i := from; i < to; i++ {
		dst = g.AppendLine(dst, i)
	}
	return dst
}

// WriteLines writes lines [from, to) to w in chunks of about 1 MiB (an
// order log for a tail source, `sluice bench` or a test).
func (g *Generator) WriteLines(w io.Writer, from, to uint64) error {
	buf := make([]byte, 0, 1<<20+4096)
	for i := from; i < to; i++ {
		buf = g.AppendLine(buf, i)
		if len(buf) >= 1<<20 || i == to-1 {
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("writing order lines up to %d: %w", i, err)
			}
			buf = buf[:0]
		}
	}
	return nil
}
