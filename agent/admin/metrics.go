package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector turns one Agent.Status per scrape into Prometheus metrics. It
// keeps no state: the agent's counters are the source of truth, so a
// scrape never disagrees with /api/status.
type collector struct {
	agent Agent

	agentState, reloadFailed, reloads                            *prometheus.Desc
	compState, restarts, in, out, failed, dlq, bytesIn, bytesOut *prometheus.Desc
	latency                                                      *prometheus.Desc
	depthEvents, depthBytes, diskBytes, appends, lowDisk         *prometheus.Desc
	pluginMem, pluginGuest, pluginCounter                        *prometheus.Desc
}

var allStates = []State{StateStarting, StateRunning, StateFailed, StateDraining, StateStopped}

func newCollector(a Agent) *collector {
	comp := []string{"component", "kind"}
	ch := []string{"channel"}
	pl := []string{"component"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("sluice_"+name, help, labels, nil)
	}
	return &collector{
		agent:         a,
		agentState:    d("agent_state", "1 for the agent's current state, 0 for the others.", []string{"state"}),
		reloadFailed:  d("reload_failed", "1 when the last reload was rejected (the previous config keeps running).", nil),
		reloads:       d("reloads_total", "Reloads since the agent started, by result: applied or rejected (the previous config kept).", []string{"result"}),
		compState:     d("component_state", "1 for the component's current state, 0 for the others.", []string{"component", "kind", "state"}),
		restarts:      d("component_restarts_total", "Restarts of the component after a failure.", comp),
		in:            d("component_events_in_total", "Events the component read.", comp),
		out:           d("component_events_out_total", "Events the component wrote.", comp),
		failed:        d("component_events_failed_total", "Events the component failed to process.", comp),
		dlq:           d("component_events_dead_lettered_total", "Events the component sent to its dead-letter channel.", comp),
		bytesIn:       d("component_bytes_in_total", "Bytes of batches the component read.", comp),
		bytesOut:      d("component_bytes_out_total", "Bytes of batches the component wrote.", comp),
		latency:       d("component_batch_latency_seconds", "Time to process one batch.", comp),
		depthEvents:   d("channel_depth_events", "Events appended and not yet consumed by the slowest reader.", ch),
		depthBytes:    d("channel_depth_bytes", "Batch bytes appended and not yet consumed by the slowest reader.", ch),
		diskBytes:     d("channel_disk_bytes", "Bytes of the channel's segment files on disk (memory held, for memory channels).", ch),
		appends:       d("channel_appends_total", "Batches appended to the channel.", ch),
		lowDisk:       d("channel_low_disk", "1 while appends wait for free disk space.", ch),
		pluginMem:     d("plugin_memory_bytes", "Linear memory of the WASM plugin's instances.", pl),
		pluginGuest:   d("plugin_guest_seconds_total", "Time spent running the WASM plugin's code.", pl),
		pluginCounter: d("plugin_counter", "Counters a WASM plugin keeps through the metrics capability.", []string{"component", "name"}),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.agentState, c.reloadFailed, c.reloads, c.compState, c.restarts, c.in, c.out, c.failed, c.dlq,
		c.bytesIn, c.bytesOut, c.latency, c.depthEvents, c.depthBytes, c.diskBytes, c.appends, c.lowDisk,
		c.pluginMem, c.pluginGuest, c.pluginCounter} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.agent.Status()
	mc := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	for _, s := range allStates {
		mc(c.agentState, prometheus.GaugeValue, b2f(st.State == s), string(s))
	}
	mc(c.reloadFailed, prometheus.GaugeValue, b2f(st.ReloadError != ""))
	mc(c.reloads, prometheus.CounterValue, float64(st.ReloadsApplied), "applied")
	mc(c.reloads, prometheus.CounterValue, float64(st.ReloadsRejected), "rejected")
	for _, x := range st.Components {
		for _, s := range allStates {
			mc(c.compState, prometheus.GaugeValue, b2f(x.State == s), x.Name, x.Kind, string(s))
		}
		mc(c.restarts, prometheus.CounterValue, float64(x.Restarts), x.Name, x.Kind)
		mc(c.in, prometheus.CounterValue, float64(x.EventsIn), x.Name, x.Kind)
		mc(c.out, prometheus.CounterValue, float64(x.EventsOut), x.Name, x.Kind)
		mc(c.failed, prometheus.CounterValue, float64(x.EventsFailed), x.Name, x.Kind)
		mc(c.dlq, prometheus.CounterValue, float64(x.DeadLettered), x.Name, x.Kind)
		mc(c.bytesIn, prometheus.CounterValue, float64(x.BytesIn), x.Name, x.Kind)
		mc(c.bytesOut, prometheus.CounterValue, float64(x.BytesOut), x.Name, x.Kind)
		h := x.BatchLatency
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			if i < len(h.Cumulative) {
				buckets[b] = h.Cumulative[i]
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, h.Count, h.Sum, buckets, x.Name, x.Kind)
	}
	for _, x := range st.Channels {
		mc(c.depthEvents, prometheus.GaugeValue, float64(x.DepthEvents), x.Name)
		mc(c.depthBytes, prometheus.GaugeValue, float64(x.DepthBytes), x.Name)
		mc(c.diskBytes, prometheus.GaugeValue, float64(x.DiskBytes), x.Name)
		mc(c.appends, prometheus.CounterValue, float64(x.Appends), x.Name)
		mc(c.lowDisk, prometheus.GaugeValue, b2f(x.LowDisk), x.Name)
	}
	for _, p := range st.Plugins {
		mc(c.pluginMem, prometheus.GaugeValue, float64(p.MemoryBytes), p.Component)
		mc(c.pluginGuest, prometheus.CounterValue, p.GuestTime.Seconds(), p.Component)
		for name, v := range p.Counters {
			mc(c.pluginCounter, prometheus.GaugeValue, float64(v), p.Component, name)
		}
	}
}
