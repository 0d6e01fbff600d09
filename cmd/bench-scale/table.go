package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

var columns = []string{
	"consumers", "streams", "sampling", "ticks", "sample p50", "sample p99", "engine mean",
	"CPU (cores)", "RSS avg", "RSS peak", "requests/tick", "in/tick", "out/tick",
	"CPU/node", "in/node", "false events",
}

// sharedColumns are the columns with --engines above 1: one row per
// engine.
var sharedColumns = slices.Insert(slices.Clone(columns), 3, "engine")

// rows are r's table rows: one, or one per engine sharing the streams.
func (r result) rows() [][]string {
	if len(r.engines) == 0 {
		return [][]string{r.cells()}
	}
	var rows [][]string
	for _, e := range r.engines {
		rows = append(rows, r.engineCells(e))
	}
	return rows
}

// engineCells is one engine's row. Sample times on the wire are not
// measured with several engines; false events, the run's, go on the
// leader's row, as the leader is the one that emits.
func (r result) engineCells(e engineFigures) []string {
	mean := "n/a"
	if e.engineHistErr == nil && e.engineHist.count > 0 {
		mean = ms(e.engineHist.mean())
	}
	falses := "-"
	if e.role == roleLeader {
		falses = fmt.Sprint(len(r.falseEvents))
	}
	return []string{
		fmt.Sprint(r.consumers), fmt.Sprint(r.streams), r.path, e.name + " " + e.role, fmt.Sprint(r.ticks), "n/a", "n/a", mean,
		fmt.Sprintf("%.3f", e.cpuCores), mib(e.rssAvg), mib(e.rssPeak),
		fmt.Sprintf("%.1f", e.requests), size(e.bytesIn), size(e.bytesOut),
		fmt.Sprintf("%.1f µs", e.cpuPerNodeMicros(r)), fmt.Sprintf("%.0f B", e.bytesPerNode(r)),
		falses,
	}
}

func (r result) cells() []string {
	p50, p99 := "n/a", "n/a"
	if r.wired {
		p50, p99 = ms(r.sampleP50.Seconds()), ms(r.sampleP99.Seconds())
	}
	mean := "n/a"
	if r.engineHistErr == nil && r.engineHist.count > 0 {
		mean = ms(r.engineHist.mean())
	}
	return []string{
		fmt.Sprint(r.consumers), fmt.Sprint(r.streams), r.path, fmt.Sprint(r.ticks), p50, p99, mean,
		fmt.Sprintf("%.3f", r.cpuCores), mib(r.rssAvg), mib(r.rssPeak),
		fmt.Sprintf("%.1f", r.requests), size(r.bytesIn), size(r.bytesOut),
		fmt.Sprintf("%.1f µs", r.cpuPerNodeMicros()), fmt.Sprintf("%.0f B", r.bytesPerNode()),
		fmt.Sprint(len(r.falseEvents)),
	}
}

func ms(sec float64) string {
	if math.IsNaN(sec) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", sec*1000)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func size(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// notes are what the table has no room for, one line per size and the
// caveats.
func (r result) notes(cfg config) []string {
	if len(r.engines) > 0 {
		return r.sharedNotes()
	}
	var n []string
	h := r.engineHist
	if r.engineHistErr != nil {
		n = append(n, fmt.Sprintf("%d consumers: the engine's sample histogram is unusable: %v", r.consumers, r.engineHistErr))
	} else {
		n = append(n, fmt.Sprintf("%d consumers: the engine's own sample histogram over %.0f samples (warm-up and window): mean %s, p50 ≈ %s, p99 ≈ %s (interpolated in its factor-2 buckets), %.0f failed samples",
			r.consumers, h.count, ms(h.mean()), ms(h.quantile(0.5)), ms(h.quantile(0.99)), h.bad))
	}
	if len(r.kinds) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.kinds)) {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, r.kinds[k]))
		}
		n = append(n, fmt.Sprintf("%d consumers: sample time on the wire over %d ticks: p50 %s, p90 %s, p99 %s, max %s",
			r.consumers, r.ticks, ms(r.sampleP50.Seconds()), ms(r.sampleP90.Seconds()), ms(r.sampleP99.Seconds()), ms(r.sampleMax.Seconds())))
		n = append(n, fmt.Sprintf("%d consumers: JetStream API requests per tick: %s", r.consumers, strings.Join(parts, ", ")))
	} else {
		n = append(n, fmt.Sprintf("%d consumers: no JetStream API requests seen on the wire: sample times n/a, ticks counted as window/interval", r.consumers))
	}
	ev := "none"
	if len(r.events) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.events)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.events[k]))
		}
		ev = strings.Join(parts, ", ")
	}
	n = append(n, fmt.Sprintf("%d consumers: events from the engine's start: %s; VmHWM %s; %d consumers created in %v; load %.0f msg/s published, %.0f delivered and acked; %d unusual pull replies",
		r.consumers, ev, mib(r.hwm), r.consumers, r.setup.Round(time.Second), r.published, r.delivered, r.unusual))
	n = append(n, fmt.Sprintf("%d consumers: the machine during the window: %.2f of %d cores busy: the engine %.3f, this program (servers and load) %.2f, other processes %.2f",
		r.consumers, r.machineCores, r.cpus, r.cpuCores, r.selfCores, r.otherCores))
	n = append(n, fmt.Sprintf("%d consumers: one scrape of /metrics (the per-node series of every node) took %v and cost the engine about %v of CPU beyond its usual rate",
		r.consumers, r.scrapeTime.Round(time.Millisecond), r.scrapeCPU.Round(time.Millisecond)))
	for _, f := range r.falseEvents {
		n = append(n, fmt.Sprintf("%d consumers: FALSE EVENT %s", r.consumers, f))
	}
	return n
}

// sharedNotes are notes' lines for a row of engines sharing the streams.
func (r result) sharedNotes() []string {
	var n []string
	cpu, machine := 0.0, fmt.Sprintf("%.2f of %d cores busy:", r.machineCores, r.cpus)
	for _, e := range r.engines {
		h := e.engineHist
		if e.engineHistErr != nil {
			n = append(n, fmt.Sprintf("%d consumers, %s: the engine's sample histogram is unusable: %v", r.consumers, e.name, e.engineHistErr))
		} else {
			n = append(n, fmt.Sprintf("%d consumers, %s: the engine's own sample histogram over %.0f samples (warm-up and window): mean %s, p50 ≈ %s, p99 ≈ %s (interpolated in its factor-2 buckets), %.0f failed samples",
				r.consumers, e.name, h.count, ms(h.mean()), ms(h.quantile(0.5)), ms(h.quantile(0.99)), h.bad))
		}
		n = append(n, fmt.Sprintf("%d consumers, %s (%s): samples %d streams (the engines' own included) and %d of the %d consumers; VmHWM %s; one scrape of /metrics took %v and cost it about %v of CPU beyond its usual rate",
			r.consumers, e.name, e.role, e.owned, e.nodes, r.consumers, mib(e.hwm), e.scrapeTime.Round(time.Millisecond), e.scrapeCPU.Round(time.Millisecond)))
		cpu += e.cpuCores
		machine += fmt.Sprintf(" %s %.3f,", e.name, e.cpuCores)
	}
	n = append(n, fmt.Sprintf("%d consumers: sample time on the wire: not measured with %d engines (their requests interleave); engine mean is each engine's own histogram's", r.consumers, len(r.engines)))
	n = append(n, fmt.Sprintf("%d consumers: events from the engines' start: %s; %d consumers created in %v; load %.0f msg/s published, %.0f delivered and acked; %d unusual pull replies",
		r.consumers, eventList(r.events), r.consumers, r.setup.Round(time.Second), r.published, r.delivered, r.unusual))
	n = append(n, fmt.Sprintf("%d consumers: the machine during the window: %s the engines %.3f in all, this program (servers and load) %.2f, other processes %.2f",
		r.consumers, machine, cpu, r.selfCores, r.otherCores))
	for _, f := range r.falseEvents {
		n = append(n, fmt.Sprintf("%d consumers: FALSE EVENT %s", r.consumers, f))
	}
	return n
}

func eventList(events map[string]int) string {
	if len(events) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(events)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, events[k]))
	}
	return strings.Join(parts, ", ")
}

func writeTable(w io.Writer, cfg config, results []result) {
	shape := "one server"
	if cfg.cluster {
		shape = fmt.Sprintf("3-server cluster, R%d", cfg.replicas)
	}
	caveats := []string{
		fmt.Sprintf("%s, %s storage, %d groups, %g msg/s per stream, --interval %v, warm-up %v, window %v",
			shape, cfg.storage, cfg.groups, cfg.rate, cfg.interval, cfg.warmup, cfg.measure),
		"sample p50/p99: per tick on the wire, from the engine's first request to the last reply it got; engine mean: its own histogram's, which adds decoding the last reply and building the snapshot",
		"in/out: bytes the engine received and sent per tick; CPU/node and in/node: per tick and node",
		"flow and rule time: not exposed by the engine (it times only the sample); see make bench",
	}
	cols := columns
	if cfg.engines > 1 {
		cols = sharedColumns
		caveats = append(caveats, fmt.Sprintf("%d engines share the streams (happen engine --ha --share), one row each, with its role at the window's end; %s; sample p50/p99 not measured; CPU/node and in/node per node the engine samples; false events: the run's, from all engines, on the leader's row; sharing engines list their own streams' consumers, so \"system access\" means they have it for the servers' signals only",
			cfg.engines, engineServers(cfg)))
	}
	var notes []string
	for _, r := range results {
		notes = append(notes, r.notes(cfg)...)
	}
	if cfg.output == "markdown" {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(cols)))
		for _, r := range results {
			for _, row := range r.rows() {
				fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			}
		}
		fmt.Fprintln(w)
		for _, c := range append(caveats, notes...) {
			fmt.Fprintf(w, "- %s\n", c)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range results {
		for _, row := range r.rows() {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, c := range append(caveats, notes...) {
		fmt.Fprintln(w, c)
	}
}

// engineServers says where the engines connect.
func engineServers(cfg config) string {
	if cfg.cluster {
		return "eK connected to server K-1 mod 3 (e1 to the first)"
	}
	return "all on the one server"
}
