package flow

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// steadySnapshot builds nodes consumers on 10 streams in 100 groups, listed
// in key order as a sampler would.
func steadySnapshot(nodes int) Snapshot {
	const streams, groups = 10, 100
	s := Snapshot{At: epoch}
	for i := range streams {
		s.Streams = append(s.Streams, StreamSample{Name: fmt.Sprintf("S%02d", i), At: epoch})
	}
	for i := range nodes {
		st := i * streams / nodes
		s.Consumers = append(s.Consumers, ConsumerSample{
			Key:        NodeKey{Stream: s.Streams[st].Name, Consumer: fmt.Sprintf("c%06d", i)},
			NodeID:     fmt.Sprintf("node-%d", i),
			Group:      fmt.Sprintf("g%02d", i%groups),
			At:         epoch,
			Created:    epoch.Add(-time.Hour),
			NumPending: uint64(i % 7),
		})
	}
	return s
}

// advance moves the snapshot one second on: 50 msgs/s per node, all taken
// and acked, a few in flight.
func advance(s *Snapshot) {
	s.At = s.At.Add(time.Second)
	for i := range s.Streams {
		s.Streams[i].At = s.At
		s.Streams[i].LastSeq += 50
	}
	for i := range s.Consumers {
		c := &s.Consumers[i]
		c.At = s.At
		c.Delivered += 50
		c.NumAckPending = uint64(i % 3)
		c.LastAck = s.At
		c.Naks += uint64(i % 2)
	}
}

func BenchmarkTrackerUpdate(b *testing.B) {
	for _, nodes := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			tr := NewTracker(Config{})
			s := steadySnapshot(nodes)
			// Fill every window, and let its buffers reach their steady
			// size, before measuring.
			for range 40 {
				advance(&s)
				tr.Update(s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				advance(&s)
				b.StartTimer()
				st := tr.Update(s)
				if len(st.Nodes) != nodes || st.System.StalledNodes != 0 {
					b.Fatalf("update saw %d nodes, %d stalled", len(st.Nodes), st.System.StalledNodes)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nodes), "ns/node")
		})
	}
}

// BenchmarkTrackerTimeLag is the tracker at 10,000 nodes on 10 streams
// that keep at most a million messages, so every time lag, loss and
// forecast rule runs. lagging=all: every node is delivered 40 of the 50
// messages a second its stream gets, its backlog growing; the sampler read
// the oldest message of 100 of them (its default budget), the rest are
// estimated. lagging=none: the steady flow of BenchmarkTrackerUpdate.
func BenchmarkTrackerTimeLag(b *testing.B) {
	const nodes = 10_000
	for _, lagging := range []bool{false, true} {
		b.Run(fmt.Sprintf("lagging=%s", map[bool]string{true: "all", false: "none"}[lagging]), func(b *testing.B) {
			tr := NewTracker(Config{})
			s := steadySnapshot(nodes)
			for i := range s.Streams {
				s.Streams[i].MaxMsgs = 1_000_000
				s.Streams[i].FirstSeq = 1
				s.Streams[i].FirstTime = epoch
			}
			step := func() {
				advance(&s)
				for i := range s.Streams {
					st := &s.Streams[i]
					st.LastTime, st.Msgs = s.At, st.LastSeq
				}
				for i := range s.Consumers {
					c := &s.Consumers[i]
					c.DeliveredStream, c.AckFloorStream = c.Delivered, c.Delivered-c.NumAckPending
					c.OldestSeq, c.OldestTime = 0, time.Time{}
					if lagging {
						c.Delivered -= 10 // 40 of the 50 published
						c.DeliveredStream, c.AckFloorStream = c.Delivered, c.Delivered-c.NumAckPending
						c.NumPending = s.Streams[0].LastSeq - c.Delivered
						if i%100 == int(s.At.Unix())%100 {
							c.OldestSeq, c.OldestTime = c.AckFloorStream+1, s.At.Add(-time.Minute)
						}
					}
				}
			}
			for range 40 {
				step()
				tr.Update(s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				step()
				b.StartTimer()
				st := tr.Update(s)
				if n := &st.Nodes[0]; n.RetentionLimited != true || (n.TimeLagSeconds > 0) != lagging || (n.SecondsToLoss > 0) != lagging {
					b.Fatalf("node %+v", n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nodes), "ns/node")
		})
	}
}

// BenchmarkTrackerRetained reports what the tracker keeps between ticks,
// per node (retained-B/node: the live heap after a collection, less the
// snapshot it is fed), and what one tick's State holds (state-B/node), at
// 10,000 nodes in the steady flow of BenchmarkTrackerUpdate after 40
// ticks. naks=half is that flow as it is, half the nodes nak'ing a message
// a second; naks=none the same without naks. B/op and allocs/op are those
// of the 40 ticks and the tracker's creation.
func BenchmarkTrackerRetained(b *testing.B) {
	const nodes = 10_000
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, naks := range []bool{true, false} {
		b.Run(fmt.Sprintf("naks=%s", map[bool]string{true: "half", false: "none"}[naks]), func(b *testing.B) {
			var retained, state float64
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				s := steadySnapshot(nodes)
				base := heap()
				b.StartTimer()
				tr := NewTracker(Config{})
				var st *State
				for range 40 {
					advance(&s)
					if !naks {
						for i := range s.Consumers {
							s.Consumers[i].Naks = 0
						}
					}
					st = tr.Update(s)
				}
				b.StopTimer()
				withState := heap()
				runtime.KeepAlive(st)
				after := heap()
				retained += (float64(after) - float64(base)) / nodes
				state += (float64(withState) - float64(after)) / nodes
				runtime.KeepAlive(tr)
				runtime.KeepAlive(&s)
				b.StartTimer()
			}
			b.ReportMetric(retained/float64(b.N), "retained-B/node")
			b.ReportMetric(state/float64(b.N), "state-B/node")
		})
	}
}
