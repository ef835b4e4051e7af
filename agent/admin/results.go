package admin

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Key prefixes written by the order-stats bolt
// (wasm-examples/order-stats/README.md): per minute M (2026-11-25T12:00),
// hashes rev:cat:M, cnt:cat:M, rev:city:M and cnt:city:M (field = name,
// value = cents or orders), sorted sets top:sku:M and top:sku (units).
const (
	keyRevCat  = "rev:cat:"
	keyCntCat  = "cnt:cat:"
	keyRevCity = "rev:city:"
	keyCntCity = "cnt:city:"
	keyTopSKU  = "top:sku"
	topSKUs    = 10
	maxMinutes = 1 << 16 // keys listed to find the newest minutes (45 days of minutes)
)

// ResultsView is the order analytics the dashboard shows, read from the
// results store: the newest minutes present (not wall-clock minutes, so
// replayed or historical data shows too), totals by category and by city
// over those minutes, and the all-time top SKUs.
type ResultsView struct {
	Source     string        `json:"source"` // "" when the agent has no results reader
	Minutes    []MinuteTotal `json:"minutes"`
	Categories []NameTotal   `json:"categories"`
	Cities     []NameTotal   `json:"cities"`
	TopSKUs    []SKUUnits    `json:"top_skus"`
}

// MinuteTotal is the revenue and order count of one minute.
type MinuteTotal struct {
	Minute       string `json:"minute"`
	RevenueCents int64  `json:"revenue_cents"`
	Orders       int64  `json:"orders"`
}

// NameTotal is the revenue and order count of one category or city.
type NameTotal struct {
	Name         string `json:"name"`
	RevenueCents int64  `json:"revenue_cents"`
	Orders       int64  `json:"orders"`
}

// SKUUnits is one SKU with its units sold.
type SKUUnits struct {
	SKU   string  `json:"sku"`
	Units float64 `json:"units"`
}

// ReadResults reads the newest minutes (at most minutes of them) from r.
// A nil r gives an empty view. A value that is not an integer is an error
// naming its key and field.
func ReadResults(r ResultsReader, minutes int) (*ResultsView, error) {
	v := &ResultsView{Minutes: []MinuteTotal{}, Categories: []NameTotal{}, Cities: []NameTotal{}, TopSKUs: []SKUUnits{}}
	if r == nil {
		return v, nil
	}
	v.Source = r.Name()
	set := map[string]bool{}
	for _, prefix := range []string{keyRevCat, keyCntCat} {
		keys, err := r.Keys(prefix, maxMinutes)
		if err != nil {
			return nil, fmt.Errorf("results: list %s*: %w", prefix, err)
		}
		for _, k := range keys {
			set[strings.TrimPrefix(k, prefix)] = true
		}
	}
	all := make([]string, 0, len(set))
	for m := range set {
		all = append(all, m)
	}
	sort.Strings(all) // minutes are ISO 8601, so string order is time order
	if len(all) > minutes {
		all = all[len(all)-minutes:]
	}
	cats, cities := map[string]*NameTotal{}, map[string]*NameTotal{}
	for _, m := range all {
		mt := MinuteTotal{Minute: m}
		if err := addHash(r, keyRevCat+m, cats, &mt.RevenueCents, func(t *NameTotal) *int64 { return &t.RevenueCents }); err != nil {
			return nil, err
		}
		if err := addHash(r, keyCntCat+m, cats, &mt.Orders, func(t *NameTotal) *int64 { return &t.Orders }); err != nil {
			return nil, err
		}
		if err := addHash(r, keyRevCity+m, cities, nil, func(t *NameTotal) *int64 { return &t.RevenueCents }); err != nil {
			return nil, err
		}
		if err := addHash(r, keyCntCity+m, cities, nil, func(t *NameTotal) *int64 { return &t.Orders }); err != nil {
			return nil, err
		}
		v.Minutes = append(v.Minutes, mt)
	}
	v.Categories, v.Cities = byRevenue(cats), byRevenue(cities)
	top, err := r.ZTop(keyTopSKU, topSKUs)
	if err != nil {
		return nil, fmt.Errorf("results: %s: %w", keyTopSKU, err)
	}
	for _, m := range top {
		v.TopSKUs = append(v.TopSKUs, SKUUnits{SKU: m.Member, Units: m.Score})
	}
	return v, nil
}

// addHash adds every field of hash key to its name's total (field picks
// which) and, when total is not nil, to *total.
func addHash(r ResultsReader, key string, into map[string]*NameTotal, total *int64, field func(*NameTotal) *int64) error {
	h, err := r.HGetAll(key)
	if err != nil {
		return fmt.Errorf("results: %s: %w", key, err)
	}
	for name, raw := range h {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("results: %s field %q: value %q is not an integer", key, name, raw)
		}
		t := into[name]
		if t == nil {
			t = &NameTotal{Name: name}
			into[name] = t
		}
		*field(t) += n
		if total != nil {
			*total += n
		}
	}
	return nil
}

func byRevenue(m map[string]*NameTotal) []NameTotal {
	out := make([]NameTotal, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].RevenueCents != out[j].RevenueCents {
			return out[i].RevenueCents > out[j].RevenueCents
		}
		return out[i].Name < out[j].Name
	})
	return out
}
