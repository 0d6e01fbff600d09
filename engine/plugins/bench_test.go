package plugins

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDispatch measures the path from Dispatch to a real plugin
// process (the ok test plugin, answering at once) over go-plugin's gRPC with
// mTLS on loopback.
//
//   - latency: one action at a time. dispatch-to-execute is from Dispatch
//     to the plugin's Execute starting (the plugin reports its clock; both
//     ends share the machine's); round-trip is until the manager has the
//     answer.
//   - throughput: many keys at once, so up to MaxParallel (16) actions are
//     in flight through the one plugin process.
func BenchmarkDispatch(b *testing.B) {
	results := make(chan Result, 4096)
	h := newHarness(b, pluginDir(b, "ok"), func(c *Config) {
		c.QueueSize = 1 << 20
		c.Observe = func(r Result) { results <- r }
	})
	with := map[string]any{"subject": "unused", "quiet": true}

	b.Run("latency", func(b *testing.B) {
		exec := make([]time.Duration, 0, b.N)
		rt := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			began := time.Now()
			h.m.Dispatch(context.Background(), fire("n1", "ev-"+strconv.Itoa(i), act("ok", with)))
			r := <-results
			done := time.Since(began)
			if r.Outcome != OutcomeOK {
				b.Fatalf("action %s: %s", r.Outcome, r.Error)
			}
			at, err := strconv.ParseInt(r.Message, 10, 64)
			if err != nil {
				b.Fatalf("plugin answered %q", r.Message)
			}
			exec = append(exec, time.Unix(0, at).Sub(began))
			rt = append(rt, done)
		}
		b.StopTimer()
		report(b, "dispatch-to-execute", exec)
		report(b, "round-trip", rt)
	})

	b.Run("throughput", func(b *testing.B) {
		b.ResetTimer()
		began := time.Now()
		go func() {
			for i := range b.N {
				h.m.Dispatch(context.Background(), fire("n"+strconv.Itoa(i%64), "ev-"+strconv.Itoa(i), act("ok", with)))
			}
		}()
		for range b.N {
			if r := <-results; r.Outcome != OutcomeOK {
				b.Fatalf("action %s: %s", r.Outcome, r.Error)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "actions/s")
	})
}

// report adds the p50 and p99 of ds, in microseconds.
func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds())
	}
	b.ReportMetric(q(0.50), fmt.Sprintf("µs-p50-%s", name))
	b.ReportMetric(q(0.99), fmt.Sprintf("µs-p99-%s", name))
}
