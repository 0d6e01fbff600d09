package flow

import (
	"fmt"
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
