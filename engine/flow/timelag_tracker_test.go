package flow

import (
	"math"
	"testing"
	"time"
)

// limitStream models a limits stream that keeps maxMsgs messages,
// discarding the oldest, with msgs published in one go every second: seq s
// is published at second ceil(s/rate).
type limitStream struct {
	rate, maxMsgs uint64
	last          uint64
}

func (s *limitStream) first() uint64 {
	if s.last == 0 {
		return 0
	}
	if s.last > s.maxMsgs {
		return s.last - s.maxMsgs + 1
	}
	return 1
}

func (s *limitStream) publishedAt(seq uint64) time.Time {
	return epoch.Add(time.Duration((seq+s.rate-1)/s.rate) * time.Second)
}

// slowNode is a consumer of the whole stream that is delivered and acks
// perTick messages a second, skipping what the stream removed first, as
// a server's consumer does.
type slowNode struct {
	perTick   uint64
	pos       uint64 // stream sequence last delivered
	delivered uint64
	lost      uint64 // truth: messages skipped because they were removed
}

func (n *slowNode) step(s *limitStream) {
	if f := s.first(); f > n.pos+1 {
		n.lost += f - 1 - n.pos
		n.pos = f - 1
	}
	k := min(n.perTick, s.last-n.pos)
	n.pos += k
	n.delivered += k
}

func TestTimeLagAndLossOnALimitedStream(t *testing.T) {
	tr := NewTracker(Config{})
	s := &limitStream{rate: 50, maxMsgs: 500}
	n := &slowNode{perTick: 10}
	key := NodeKey{Stream: "S", Consumer: "slow"}
	var sawRisk, sawLoss bool
	var prevToLoss float64 = -1
	for sec := 1; sec <= 60; sec++ {
		at := epoch.Add(time.Duration(sec) * time.Second)
		if sec <= 40 {
			s.last += s.rate // publishing stops after 40s: the node then catches up
		}
		n.step(s)
		f := s.first()
		stream := StreamSample{
			Name: "S", At: at, LastSeq: s.last, FirstSeq: f, Msgs: s.last - f + 1,
			FirstTime: s.publishedAt(f), LastTime: s.publishedAt(s.last), MaxMsgs: int64(s.maxMsgs),
		}
		pending := s.last - n.pos
		cs := ConsumerSample{
			Key: key, At: at, Created: epoch, NumPending: pending, NumWaiting: 1,
			Delivered: n.delivered, DeliveredStream: n.pos, AckFloor: n.delivered, AckFloorStream: n.pos, LastAck: at,
		}
		oldest := max(n.pos+1, f)
		read := sec%2 == 0 // every other sample has a read; the rest are estimated
		if read && pending > 0 {
			cs.OldestSeq, cs.OldestTime = oldest, s.publishedAt(oldest)
		}
		st := tr.Update(Snapshot{At: at, Streams: []StreamSample{stream}, Consumers: []ConsumerSample{cs}})
		node := st.Node(key)

		if !node.RetentionLimited {
			t.Fatalf("%ds: retentionLimited false on a stream with MaxMsgs", sec)
		}
		truthLag := 0.0
		if pending > 0 {
			truthLag = at.Sub(s.publishedAt(oldest)).Seconds()
		}
		switch {
		case pending == 0 && (node.TimeLagSeconds != 0 || node.TimeLagEstimated):
			t.Errorf("%ds: nothing waits, time lag %v (estimated %v)", sec, node.TimeLagSeconds, node.TimeLagEstimated)
		case pending > 0 && read && (node.TimeLagEstimated || node.TimeLagSeconds != truthLag):
			t.Errorf("%ds: read time lag %v (estimated %v), want exactly %v", sec, node.TimeLagSeconds, node.TimeLagEstimated, truthLag)
		case pending > 0 && !read && (!node.TimeLagEstimated || math.Abs(node.TimeLagSeconds-truthLag) > 1):
			// Interpolation between seconds is off by under one: messages
			// go out in one batch a second.
			t.Errorf("%ds: estimated time lag %v (estimated %v), want within 1s of %v", sec, node.TimeLagSeconds, node.TimeLagEstimated, truthLag)
		}
		if node.MessagesLost != int(n.lost) {
			t.Errorf("%ds: messagesLost %d, want %d", sec, node.MessagesLost, n.lost)
		}

		// The backlog grows 40/s toward the stream's 500: the forecast
		// counts down to the first loss (after 12.5s of lag) and is 0 once
		// the stream removes what the node has not been delivered.
		switch {
		case sec >= 3 && n.lost == 0 && sec <= 40:
			sawRisk = true
			want := float64(500-pending) / 40
			if math.Abs(node.SecondsToLoss-want) > 0.01 {
				t.Errorf("%ds: secondsToLoss %v, want %v (%d pending)", sec, node.SecondsToLoss, want, pending)
			}
			if prevToLoss >= 0 && node.SecondsToLoss >= prevToLoss {
				t.Errorf("%ds: the forecast did not count down: %v after %v", sec, node.SecondsToLoss, prevToLoss)
			}
			prevToLoss = node.SecondsToLoss
		case n.lost > 0 && sec <= 40:
			sawLoss = true
			if node.SecondsToLoss != 0 {
				t.Errorf("%ds: losing messages, secondsToLoss %v, want 0", sec, node.SecondsToLoss)
			}
			if node.LossRate != 40 && sec > 25 {
				t.Errorf("%ds: lossRate %v, want 40/s once the window holds only losses", sec, node.LossRate)
			}
			if node.SecondsToDrain != -1 {
				t.Errorf("%ds: secondsToDrain %v while the backlog does not shrink", sec, node.SecondsToDrain)
			}
		case sec >= 52 && sec <= 55:
			// Publishing stopped at 40s; the node drains 10/s.
			if node.SecondsToLoss != -1 {
				t.Errorf("%ds: secondsToLoss %v while it catches up, want -1", sec, node.SecondsToLoss)
			}
			if want := float64(pending) / 10; math.Abs(node.SecondsToDrain-want) > 0.01 {
				t.Errorf("%ds: secondsToDrain %v, want %v", sec, node.SecondsToDrain, want)
			}
			if node.LossRate != 0 {
				t.Errorf("%ds: lossRate %v a window after the last loss", sec, node.LossRate)
			}
		}
	}
	if !sawRisk || !sawLoss || n.lost == 0 {
		t.Fatalf("the run never showed risk (%v) and loss (%v, %d lost)", sawRisk, sawLoss, n.lost)
	}
}

// Interest and work-queue streams remove what was acked, so their first
// sequence races ahead of a node that keeps up; an unlimited stream cannot
// lose anything. Neither is a risk.
func TestNoRiskWithoutLoss(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  StreamSample
		limited bool
	}{
		{"work queue with MaxMsgs, node keeps up", StreamSample{MaxMsgs: 100}, true},
		{"unlimited", StreamSample{}, false},
		{"discard new", StreamSample{MaxMsgs: 100, DiscardNew: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(Config{})
			key := NodeKey{Stream: "W", Consumer: "c"}
			var last, pos uint64
			for sec := 1; sec <= 30; sec++ {
				at := epoch.Add(time.Duration(sec) * time.Second)
				last += 50
				pos = last - 5 // five in flight
				stream := tc.limits
				stream.Name, stream.At, stream.LastSeq = "W", at, last
				// Acked messages are gone: the stream holds what is in flight.
				stream.FirstSeq, stream.Msgs = pos-4, 10
				stream.FirstTime, stream.LastTime = at.Add(-200*time.Millisecond), at
				cs := ConsumerSample{
					Key: key, At: at, Created: epoch, NumPending: 5, NumAckPending: 5, NumWaiting: 1,
					Delivered: pos, DeliveredStream: pos, AckFloor: pos - 5, AckFloorStream: pos - 5, LastAck: at,
				}
				node := tr.Update(Snapshot{At: at, Streams: []StreamSample{stream}, Consumers: []ConsumerSample{cs}}).Node(key)
				if node.RetentionLimited != tc.limited || node.MessagesLost != 0 || node.LossRate != 0 ||
					(sec > 2 && node.SecondsToLoss != -1) {
					t.Fatalf("%ds: limited %v, lost %d at %v/s, secondsToLoss %v; want limited %v and no loss in sight",
						sec, node.RetentionLimited, node.MessagesLost, node.LossRate, node.SecondsToLoss, tc.limited)
				}
				if sec > 3 && (node.SecondsToDrain <= 0 || node.SecondsToDrain > 1) {
					t.Fatalf("%ds: a node that keeps up drains its 10 in flight in %vs, want 0.2s at its ack rate", sec, node.SecondsToDrain)
				}
			}
		})
	}
}

// A node whose stream is not in the sample (unreadable this tick) still
// gets an estimate, from its own rates.
func TestTimeLagWithoutStream(t *testing.T) {
	tr := NewTracker(Config{})
	key := NodeKey{Stream: "S", Consumer: "c"}
	var node *Node
	for sec := 1; sec <= 12; sec++ {
		at := epoch.Add(time.Duration(sec) * time.Second)
		// 20/s arrive, nothing is delivered: the oldest of 20*sec waiting
		// arrived sec seconds ago.
		cs := ConsumerSample{Key: key, At: at, Created: epoch, NumPending: uint64(20 * sec), NumWaiting: 1}
		node = tr.Update(Snapshot{At: at, Consumers: []ConsumerSample{cs}}).Node(key)
	}
	if !node.TimeLagEstimated || math.Abs(node.TimeLagSeconds-12) > 0.01 {
		t.Errorf("time lag %v (estimated %v), want about 12s, estimated", node.TimeLagSeconds, node.TimeLagEstimated)
	}
	if node.RetentionLimited || node.SecondsToLoss != -1 {
		t.Errorf("no stream read: limited %v, secondsToLoss %v", node.RetentionLimited, node.SecondsToLoss)
	}
}
