package flow

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// randomTraffic builds a snapshot series over streams and nodes in a few
// groups (some without one), where each node keeps a random behaviour:
// steady, stalling at a random tick, falling behind, idle, or acking in
// batches. It is traffic for comparing computations, not a model.
func randomTraffic(seed uint64, streams, nodes, ticks int) []Snapshot {
	r := rand.New(rand.NewPCG(seed, 1))
	s := Snapshot{At: epoch}
	for i := range streams {
		s.Streams = append(s.Streams, StreamSample{Name: fmt.Sprintf("S%02d", i), At: epoch})
	}
	type beh struct{ kind, stallAt, rate, every int }
	bs := make([]beh, nodes)
	for i := range nodes {
		g := ""
		if k := r.IntN(5); k > 0 {
			g = fmt.Sprintf("g%d", k)
		}
		s.Consumers = append(s.Consumers, ConsumerSample{
			Key:     NodeKey{Stream: s.Streams[r.IntN(streams)].Name, Consumer: fmt.Sprintf("c%04d", i)},
			NodeID:  fmt.Sprintf("node-%d", i),
			Group:   g,
			At:      epoch,
			Created: epoch.Add(-time.Hour),
		})
		bs[i] = beh{kind: r.IntN(5), stallAt: 5 + r.IntN(ticks), rate: 1 + r.IntN(40), every: 2 + r.IntN(4)}
	}
	slices.SortFunc(s.Consumers, func(a, b ConsumerSample) int { return compareKeys(a.Key, b.Key) })
	out := make([]Snapshot, 0, ticks)
	for t := range ticks {
		s.At = s.At.Add(time.Second)
		for i := range s.Streams {
			s.Streams[i].At = s.At
			s.Streams[i].LastSeq += uint64(10 + r.IntN(50))
		}
		for i := range s.Consumers {
			c, b := &s.Consumers[i], bs[i]
			c.At = s.At
			switch {
			case b.kind == 0: // idle
			case b.kind == 1 && t >= b.stallAt: // stalled: work arrives, nothing is acked
				c.NumPending += uint64(b.rate)
			case b.kind == 2: // falls behind: takes half of what arrives
				c.NumPending += uint64(b.rate - b.rate/2)
				c.Delivered += uint64(b.rate / 2)
				c.LastAck = s.At
			case b.kind == 3 && t%b.every != 0: // batch acker between batches
				c.NumPending += uint64(b.rate)
			default:
				c.Delivered += uint64(b.rate) + c.NumPending
				c.NumPending = 0
				c.LastAck = s.At
			}
		}
		snap := s
		snap.Streams = slices.Clone(s.Streams)
		snap.Consumers = slices.Clone(s.Consumers)
		out = append(out, snap)
	}
	return out
}

// share keeps what one of n engines, owning the streams with index%n ==
// part, samples of s.
func share(s Snapshot, part, n int) Snapshot {
	owns := func(stream string) bool {
		var i int
		fmt.Sscanf(stream, "S%d", &i)
		return i%n == part
	}
	out := s
	out.Streams, out.Consumers = nil, nil
	for _, ss := range s.Streams {
		if owns(ss.Name) {
			out.Streams = append(out.Streams, ss)
		}
	}
	for _, c := range s.Consumers {
		if owns(c.Key.Stream) {
			out.Consumers = append(out.Consumers, c)
		}
	}
	return out
}

// TestAggregatorMatchesTracker splits random traffic over three trackers,
// as three engines sharing the streams would, and checks that combining
// their nodes gives, at every update, exactly the nodes, groups and system
// (baselines included) of one tracker that saw everything.
func TestAggregatorMatchesTracker(t *testing.T) {
	for seed := range uint64(20) {
		series := randomTraffic(seed, 7, 60, 60)
		whole := NewTracker(Config{})
		parts := []*Tracker{NewTracker(Config{}), NewTracker(Config{}), NewTracker(Config{})}
		agg := NewAggregator(Config{})
		stalls := 0
		for tick, snap := range series {
			want := whole.Update(snap)
			got := &State{At: snap.At}
			var rate float64
			var known bool
			var streams int
			for i, tr := range parts {
				st := tr.Update(share(snap, i, len(parts)))
				got.Nodes = append(got.Nodes, st.Nodes...)
				r, k, n := tr.StreamTotals()
				rate, known, streams = rate+r, known || k, streams+n
			}
			slices.SortFunc(got.Nodes, func(a, b Node) int { return compareKeys(a.Key, b.Key) })
			// Summed in another order, the publish rate may differ in its
			// last bits; the system's rate is a sum of rates, not a count.
			if d := rate - want.System.PublishRate; d > 1e-9 || d < -1e-9 {
				t.Fatalf("seed %d tick %d: publish rate %v, want %v", seed, tick, rate, want.System.PublishRate)
			}
			agg.Combine(got, want.System.PublishRate, known, streams)
			if !reflect.DeepEqual(got.Nodes, want.Nodes) {
				t.Fatalf("seed %d tick %d: nodes differ", seed, tick)
			}
			if !reflect.DeepEqual(got.Groups, want.Groups) {
				t.Fatalf("seed %d tick %d: groups\n got %+v\nwant %+v", seed, tick, got.Groups, want.Groups)
			}
			if !reflect.DeepEqual(got.System, want.System) {
				t.Fatalf("seed %d tick %d: system\n got %+v\nwant %+v", seed, tick, got.System, want.System)
			}
			stalls += want.System.StalledNodes
		}
		if stalls == 0 {
			t.Fatalf("seed %d: no node ever stalled; the traffic does not exercise the groups' stall fields", seed)
		}
	}
}

// TestAggregatorForgetsGroups: a group with no node in an update is gone
// from it, and comes back fresh.
func TestAggregatorForgetsGroups(t *testing.T) {
	agg := NewAggregator(Config{})
	st := &State{At: epoch, Nodes: []Node{{Key: NodeKey{Stream: "S", Consumer: "a"}, Group: "g", MessagesWaiting: 3}}}
	agg.Combine(st, 0, false, 1)
	if len(st.Groups) != 1 || st.Groups[0].MessagesWaiting != 3 || st.System.Groups != 1 {
		t.Fatalf("groups %+v", st.Groups)
	}
	st = &State{At: epoch.Add(time.Second), Nodes: []Node{{Key: NodeKey{Stream: "S", Consumer: "b"}, MessagesWaiting: 1}}}
	agg.Combine(st, 0, false, 1)
	if len(st.Groups) != 0 || st.System.Groups != 0 || len(agg.groups) != 0 {
		t.Fatalf("group kept after its nodes left: %+v, %d held", st.Groups, len(agg.groups))
	}
}
