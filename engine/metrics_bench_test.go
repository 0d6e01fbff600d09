package engine

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/prometheus/client_golang/prometheus"
)

func nodesState(n int) *flow.State {
	st := &flow.State{Nodes: make([]flow.Node, n)}
	for i := range st.Nodes {
		s, c := fmt.Sprintf("S%03d", i%100), fmt.Sprintf("c%05d", i)
		st.Nodes[i] = flow.Node{Key: flow.NodeKey{Stream: s, Consumer: c}, Stream: s, Consumer: c, ID: c,
			Group: fmt.Sprintf("g%02d", i%20), MessagesWaiting: i % 50, AckRate: 20, DeliveryRate: 20,
			SecondsToDrain: -1, SecondsToLoss: -1}
	}
	return st
}

// The per-node series at 10,000 nodes: the tick's cost of keeping them,
// the heap they hold, and a scrape.
func BenchmarkNodeMetrics10k(b *testing.B) {
	st := nodesState(10_000)
	b.Run("observe", func(b *testing.B) {
		m := newMetrics(prometheus.NewRegistry())
		m.observe(st)
		b.ReportAllocs()
		for b.Loop() {
			m.observe(st)
		}
	})
	b.Run("retained", func(b *testing.B) {
		var before, after runtime.MemStats
		for b.Loop() {
			runtime.GC()
			runtime.ReadMemStats(&before)
			reg := prometheus.NewRegistry()
			m := newMetrics(reg)
			m.observe(st)
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(st.Nodes)), "B/node")
			runtime.KeepAlive(m)
		}
	})
	b.Run("gather", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		m := newMetrics(reg)
		m.observe(st)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
