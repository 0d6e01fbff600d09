package engine

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// state is a flow state at t with one node per lag value, keyed ORDERS/<id>.
func state(t time.Time, lags map[string]int, unobserved ...string) *flow.State {
	st := &flow.State{At: t}
	for _, id := range slices.Sorted(maps.Keys(lags)) {
		st.Nodes = append(st.Nodes, flow.Node{Key: flow.NodeKey{Stream: "ORDERS", Consumer: id}, ID: id, MessagesWaiting: lags[id]})
	}
	for _, id := range unobserved {
		st.Unobserved = append(st.Unobserved, flow.NodeKey{Stream: "ORDERS", Consumer: id})
	}
	return st
}

func key(id string) flow.NodeKey { return flow.NodeKey{Stream: "ORDERS", Consumer: id} }

// show renders a series with NaN as "_", for comparisons.
func show(s []float32) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		if math.IsNaN(float64(v)) {
			out += "_"
		} else {
			out += fmt.Sprint(v)
		}
	}
	return out
}

func TestHistoryRecordsOncePerStep(t *testing.T) {
	var h history
	step, interval := 5*time.Second, time.Second
	// 16 ticks a second apart: points at 0s, 5s, 10s, 15s.
	for i := range 16 {
		h.record(state(t0.Add(time.Duration(i)*interval), map[string]int{"a": i}), step, interval)
	}
	got := h.lag([]flow.NodeKey{key("a")})
	if got.Step != step || !got.At.Equal(t0.Add(15*time.Second)) {
		t.Fatalf("step %v at %v, want 5s at +15s", got.Step, got.At)
	}
	if s := show(got.Series[0]); s != "0 5 10 15" {
		t.Fatalf("series %q, want one point per step", s)
	}
	// The same state again (a blind tick leaves it in place) adds nothing.
	st := state(t0.Add(20*time.Second), map[string]int{"a": 99})
	h.record(st, step, interval)
	h.record(st, step, interval)
	if s := show(h.lag([]flow.NodeKey{key("a")}).Series[0]); s != "0 5 10 15 99" {
		t.Fatalf("series %q after a repeated state", s)
	}
}

func TestHistoryIsBoundedAndWraps(t *testing.T) {
	var h history
	step := time.Second
	n := 3*HistoryPoints + 7
	for i := range n {
		h.record(state(t0.Add(time.Duration(i)*step), map[string]int{"a": i, "b": 1000 + i}), step, step)
	}
	got := h.lag([]flow.NodeKey{key("a"), key("b"), key("gone")})
	for i, s := range got.Series {
		if len(s) != HistoryPoints {
			t.Fatalf("series %d has %d points, want %d", i, len(s), HistoryPoints)
		}
	}
	for j := range HistoryPoints {
		want := float32(n - HistoryPoints + j)
		if got.Series[0][j] != want || got.Series[1][j] != 1000+want {
			t.Fatalf("point %d: a=%v b=%v, want %v and %v (oldest first, the last %d)", j, got.Series[0][j], got.Series[1][j], want, 1000+want, HistoryPoints)
		}
		if !math.IsNaN(float64(got.Series[2][j])) {
			t.Fatalf("unknown node has point %d = %v, want NaN", j, got.Series[2][j])
		}
	}
	if len(h.series) != 2 {
		t.Fatalf("%d series kept, want 2", len(h.series))
	}
}

func TestHistoryGapsAndChurn(t *testing.T) {
	var h history
	step := time.Second
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * step) }
	h.record(state(at(0), map[string]int{"a": 1, "b": 2}), step, step)
	h.record(state(at(1), map[string]int{"a": 3, "b": 4}), step, step)
	// b cannot be read for a step: it keeps its history, with a gap.
	h.record(state(at(2), map[string]int{"a": 5}, "b"), step, step)
	// c joins; the engine was blind for two steps (no sample at 3 and 4).
	h.record(state(at(5), map[string]int{"a": 7, "b": 8, "c": 9}), step, step)
	got := h.lag([]flow.NodeKey{key("a"), key("b"), key("c")})
	for i, want := range []string{"1 3 5 _ _ 7", "2 4 _ _ _ 8", "_ _ _ _ _ 9"} {
		if s := show(got.Series[i]); s != want {
			t.Fatalf("series %d = %q, want %q", i, s, want)
		}
	}
	// a leaves: its history goes with it.
	h.record(state(at(6), map[string]int{"b": 10, "c": 11}), step, step)
	if h.size() != 2 {
		t.Fatalf("%d series after a node left, want 2", h.size())
	}
	if s := show(h.lag([]flow.NodeKey{key("a")}).Series[0]); s != "_ _ _ _ _ _ _" {
		t.Fatalf("a left but has %q", s)
	}
	// A node gone for longer than the ring holds starts clean when back.
	var far int
	for far = 7; far < 7+HistoryPoints+5; far++ {
		h.record(state(at(far), map[string]int{"c": far}), step, step)
	}
	h.record(state(at(far), map[string]int{"b": 1, "c": far}), step, step)
	s := h.lag([]flow.NodeKey{key("b")}).Series[0]
	for j, v := range s[:len(s)-1] {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("b point %d = %v after a long absence, want NaN", j, v)
		}
	}
	if s[len(s)-1] != 1 {
		t.Fatalf("b newest point %v, want 1", s[len(s)-1])
	}
}

func TestHistoryStep(t *testing.T) {
	for _, c := range []struct{ configured, interval, want time.Duration }{
		{0, time.Second, DefaultHistoryStep},
		{0, 250 * time.Millisecond, DefaultHistoryStep},
		{0, 10 * time.Second, 10 * time.Second},
		{time.Second, 250 * time.Millisecond, time.Second},
		{time.Second, 2 * time.Second, 2 * time.Second},
	} {
		if got := historyStep(c.configured, c.interval); got != c.want {
			t.Errorf("historyStep(%v, %v) = %v, want %v", c.configured, c.interval, got, c.want)
		}
	}
}

func TestTickBell(t *testing.T) {
	var b tickBell
	n0, ch := b.next()
	select {
	case <-ch:
		t.Fatal("bell rang before a tick")
	default:
	}
	b.ring()
	select {
	case <-ch:
	default:
		t.Fatal("bell did not ring after a tick")
	}
	if n1, _ := b.next(); n1 != n0+1 {
		t.Fatalf("tick count %d after one tick from %d", n1, n0)
	}
}

// benchState is n nodes in the sorted order a tracker gives them.
func benchState(n int) *flow.State {
	st := &flow.State{Nodes: make([]flow.Node, n)}
	for i := range st.Nodes {
		id := fmt.Sprintf("node-%05d", i)
		st.Nodes[i] = flow.Node{Key: flow.NodeKey{Stream: "ORDERS", Consumer: id}, ID: id, MessagesWaiting: i % 500}
	}
	return st
}

// BenchmarkHistory10k is the history's share of a tick at 10,000 nodes
// and the default 1s interval (a point every 5s): per tick, amortised over
// the ticks that record and those that do not. Compare with
// BenchmarkTrackerUpdate/nodes=10000 in engine/flow.
func BenchmarkHistory10k(b *testing.B) {
	for _, c := range []struct {
		name string
		step time.Duration
	}{{"step=5s", 5 * time.Second}, {"step=1s", time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			base := benchState(10_000)
			var h history
			at := t0
			b.ReportAllocs()
			for b.Loop() {
				at = at.Add(time.Second)
				st := *base // a new state each tick, as the tracker returns
				st.At = at
				h.record(&st, c.step, time.Second)
			}
			b.ReportMetric(float64(h.size()), "nodes")
		})
	}
}

// BenchmarkLagHistoryPage is one /api/nodes page of 100 rows' sparklines.
func BenchmarkLagHistoryPage(b *testing.B) {
	base := benchState(10_000)
	var h history
	for i := range HistoryPoints {
		st := *base
		st.At = t0.Add(time.Duration(i) * 5 * time.Second)
		h.record(&st, 5*time.Second, time.Second)
	}
	keys := make([]flow.NodeKey, 100)
	for i := range keys {
		keys[i] = base.Nodes[i*97].Key
	}
	b.ReportAllocs()
	for b.Loop() {
		h.lag(keys)
	}
}
