package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
)

// TopOptions tune Top.
type TopOptions struct {
	Interval time.Duration // between refreshes; default 1s
	Frames   int           // stop after this many frames; 0: until ctx ends
	Clear    bool          // clear the terminal before each frame (ANSI)
}

// Top prints a live table of per-component rates and channel depths from
// /api/status, one frame per interval, until ctx ends (nil) or a request
// fails. This is `sluice top`.
func Top(ctx context.Context, w io.Writer, c *Client, opts TopOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for frame := 1; ; frame++ {
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if opts.Clear {
			fmt.Fprint(w, "\x1b[H\x1b[2J")
		}
		if err := RenderStatus(w, st); err != nil {
			return err
		}
		if opts.Frames > 0 && frame >= opts.Frames {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RenderStatus writes one frame of `sluice top`.
func RenderStatus(w io.Writer, st *admin.StatusView) error {
	head := fmt.Sprintf("agent %s at %s", st.State, st.Time.Format(time.TimeOnly))
	if st.ReloadError != "" {
		head += fmt.Sprintf("  (last reload rejected: %s)", st.ReloadError)
	}
	fmt.Fprintln(w, head)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tKIND\tSTATE\tIN/s\tOUT/s\tIN\tOUT\tDEAD-LETTERED\tRESTARTS\tBATCH ms")
	var errs []string
	for _, c := range st.Components {
		in, out := "-", "-"
		if r, ok := st.Rates[admin.NodeID(c.Kind, c.Name)]; ok {
			in, out = fmt.Sprintf("%.1f", r.In), fmt.Sprintf("%.1f", r.Out)
		}
		batch := "-" // mean time per batch since the start
		if h := c.BatchLatency; h.Count > 0 {
			batch = fmt.Sprintf("%.2f", 1000*h.Sum/float64(h.Count))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", c.Name, c.Kind, c.State, in, out, c.EventsIn, c.EventsOut, c.DeadLettered, c.Restarts, batch)
		if c.State == admin.StateFailed && c.LastError != "" {
			errs = append(errs, fmt.Sprintf("%s: %s", c.Name, c.LastError))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tDEPTH\tDEPTH BYTES\tDISK BYTES\tAPPENDS")
	for _, c := range st.Channels {
		low := ""
		if c.LowDisk {
			low = "  LOW DISK"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d%s\n", c.Name, c.DepthEvents, c.DepthBytes, c.DiskBytes, c.Appends, low)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Plugins) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WASM PLUGIN\tMEMORY\tGUEST s")
		for _, p := range st.Plugins {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\n", p.Component, p.MemoryBytes, p.GuestTime.Seconds())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		_, err := fmt.Fprintf(w, "failing: %s\n", strings.Join(errs, "; "))
		return err
	}
	return nil
}

// PrintTap prints events of channel as they are appended, one line each
// ("TIME KEY BODY"; a binary body in base64 with a "base64:" prefix),
// then a summary line. This is `sluice tap CHANNEL`.
func PrintTap(ctx context.Context, w io.Writer, c *Client, channel string, sample, limit int) error {
	end, err := c.Tap(ctx, channel, sample, limit, func(e admin.TapEvent) error {
		body := e.Body
		if e.BodyBase64 != nil {
			body = "base64:" + base64.StdEncoding.EncodeToString(e.BodyBase64)
		}
		key := e.Key
		if key == "" {
			key = "-"
		}
		_, err := fmt.Fprintf(w, "%s %s %s\n", e.Time.Format(time.RFC3339Nano), key, body)
		return err
	})
	if err != nil {
		return err
	}
	if end.Reason != "" {
		_, err = fmt.Fprintf(w, "# %d events (%d dropped: reader too slow); %s\n", end.Sent, end.Dropped, end.Reason)
	}
	return err
}
