package flow

import (
	"math"
	"sort"
	"time"
)

// This file holds the rules for time lag, time to drain and data loss: how
// far behind a node is in time, when it will have caught up, what its
// stream's limits removed before the node was delivered it, and when they
// will start to. Like metrics.go, one small pure function each.

// seqTime is a stream sequence and the publish time of its message, Unix
// nanoseconds.
type seqTime struct {
	seq uint64
	at  int64
}

// histMax bounds a stream's sequence history. Thinning the older half when
// it is full keeps recent ticks dense and spaces older points ever wider,
// so 64 points span hours at a 1s interval.
const histMax = 64

// seqHistory is a stream's recent last sequences and their publish times,
// ascending in both: what publishing looked like, to tell when a given
// sequence was published.
type seqHistory struct {
	pts []seqTime
}

// add records that seq was published at at. A point that does not move
// forward in both is ignored: the stream did not grow, or another server's
// clock answered.
func (h *seqHistory) add(p seqTime) {
	if n := len(h.pts); n > 0 {
		last := h.pts[n-1]
		if p.seq <= last.seq || p.at < last.at {
			return
		}
	}
	if len(h.pts) == histMax {
		// Drop every other point of the older half.
		half := histMax / 2
		w := 0
		for i := 0; i < half; i += 2 {
			h.pts[w] = h.pts[i]
			w++
		}
		w += copy(h.pts[w:], h.pts[half:])
		h.pts = h.pts[:w]
	}
	if h.pts == nil {
		h.pts = make([]seqTime, 0, histMax)
	}
	h.pts = append(h.pts, p)
}

func (h *seqHistory) clear() { h.pts = h.pts[:0] }

// publishedAt is the interpolation rule for the publish time of message
// seq, as Kafka Lag Exporter interpolates offsets: linear between the
// nearest known points around it, from the stream's first message (first,
// when its time is known), through the history, to its last (last). A
// sequence at or past the last one is the last message's time; one before
// every known point is the earliest known time, so the age it gives is a
// floor. ok is false when nothing is known.
func publishedAt(seq uint64, first seqTime, hist []seqTime, last seqTime) (int64, bool) {
	// The known points, ascending: first (if its time is known and it is
	// older than the history), the history, last (if newer).
	n := len(hist)
	pt := func(i int) seqTime { // i in [-1, n]: -1 is first, n is last
		switch {
		case i < 0:
			return first
		case i >= n:
			return last
		}
		return hist[i]
	}
	lo, hi := 0, n-1
	if first.at != 0 && (n == 0 || (first.seq < hist[0].seq && first.at <= hist[0].at)) {
		lo = -1
	}
	if last.at != 0 && (n == 0 || (last.seq > hist[n-1].seq && last.at >= hist[n-1].at)) {
		hi = n
	}
	if hi < lo {
		return 0, false
	}
	if seq <= pt(lo).seq {
		return pt(lo).at, true
	}
	if seq >= pt(hi).seq {
		return pt(hi).at, true
	}
	// The first known point at or past seq; lo < j <= hi.
	j := lo + 1 + sort.Search(hi-lo, func(k int) bool { return pt(lo+1+k).seq >= seq })
	a, b := pt(j-1), pt(j)
	if b.seq == a.seq {
		return b.at, true
	}
	frac := float64(seq-a.seq) / float64(b.seq-a.seq)
	return a.at + int64(frac*float64(b.at-a.at)), true
}

// lagFromRates is the time lag estimate with no stream to read: what
// waits took waiting/arrivalRate to arrive, but none of it is older than
// the last moment the node was seen with nothing waiting (idleAt, zero if
// never). With nothing arriving it has waited since then at least, or, if
// the node was never seen idle, since watching began (observedSince): a
// floor.
func lagFromRates(waiting int, arrivalRate float64, at, idleAt, observedSince time.Time) float64 {
	if arrivalRate > 0 {
		est := float64(waiting) / arrivalRate
		if !idleAt.IsZero() {
			est = min(est, nonNegSeconds(at.Sub(idleAt)))
		}
		return est
	}
	return nonNegSeconds(at.Sub(later(idleAt, observedSince)))
}

// drainSeconds is the SecondsToDrain rule: 0 with nothing waiting. A node
// that keeps up (its lag floor within one interval's arrivals) has only its
// working set waiting, which turns over at its ack rate: by Little's law
// what waits now is done in waiting/ackRate. A node with a real backlog
// drains it at the rate the backlog shrinks (the negative lag slope); -1
// while it does not shrink.
func drainSeconds(waiting int, slope, ackRate float64, keepsUp bool) float64 {
	switch {
	case waiting <= 0:
		return 0
	case keepsUp && ackRate > 0:
		return float64(waiting) / ackRate
	case slope < 0:
		return float64(waiting) / -slope
	}
	return -1
}

// lossState is what loss accounting keeps of a node between samples.
type lossState struct {
	set bool
	// mark is the highest stream sequence accounted for: passed by the
	// node's deliveries or counted lost. Nothing at or below it is counted
	// again.
	mark      uint64
	delivered uint64 // Delivered (consumer sequence) at the last sample
	pending   uint64 // NumPending at the last sample
	lost      uint64 // counted so far
}

// lossInput is what one sample says about a node's position against its
// stream's first sequence.
type lossInput struct {
	pos       uint64 // DeliveredStream: the stream sequence last delivered
	delivered uint64 // Delivered: deliveries so far, redeliveries included
	pending   uint64 // NumPending
	first     uint64 // the stream's FirstSeq; 0 if unknown
	filtered  bool
	limited   bool // the stream has a limit that removes messages
}

// lossStep is the MessagesLost rule: messages the stream's limits removed
// before the node was delivered them.
//
// A consumer that reads the whole stream passes every sequence in order,
// delivering it or, if it was removed first, skipping it. Between two
// samples, the sequences it passed beyond the mark that its deliveries do
// not account for were skipped: lost. Sequences below the stream's first
// one and beyond the node's position were removed before it got there:
// lost too. The count is exact when nothing was redelivered in between;
// a redelivery counts as a delivery, so it never overcounts, and a
// message deleted by hand on a limited stream counts as lost.
//
// A filtered consumer passes sequences of other subjects without a trace,
// so its count is a floor: the fall of its pending count that its
// deliveries do not explain, once the stream's first sequence has passed
// where it stood (new arrivals hide the rest).
//
// The first sample sets the mark; a gap already open then (messages
// removed before watching began) counts at once. Only limited streams
// lose messages: on others the mark just follows the node.
func lossStep(s lossState, in lossInput) lossState {
	if !s.set {
		s = lossState{set: true, mark: in.pos, lost: s.lost}
		if in.limited && !in.filtered && in.first > in.pos+1 {
			s.lost += in.first - 1 - in.pos
			s.mark = in.first - 1
		}
		s.delivered, s.pending = in.delivered, in.pending
		return s
	}
	d := clampStepU(s.delivered, in.delivered)
	if in.limited {
		if in.filtered {
			if in.first > s.mark+1 && s.pending > in.pending+d {
				s.lost += s.pending - in.pending - d
			}
		} else {
			if in.pos > s.mark && in.pos-s.mark > d {
				s.lost += in.pos - s.mark - d
			}
			if in.first > 0 && in.first-1 > max(s.mark, in.pos) {
				s.lost += in.first - 1 - max(s.mark, in.pos)
				s.mark = in.first - 1
			}
		}
	}
	s.mark = max(s.mark, in.pos)
	s.delivered, s.pending = in.delivered, in.pending
	return s
}

// msgLimit is the number of messages a stream holds before its limits
// remove old ones to take new ones: MaxMsgs, or MaxBytes over the mean
// size of what it holds, whichever is lower; 0 when neither applies (no
// such limit, or DiscardNew, under which publishes are refused instead).
func msgLimit(s *StreamSample) float64 {
	if s.DiscardNew {
		return 0
	}
	limit := math.Inf(1)
	if s.MaxMsgs > 0 {
		limit = float64(s.MaxMsgs)
	}
	if s.MaxBytes > 0 && s.Msgs > 0 && s.Bytes > 0 {
		limit = min(limit, float64(s.MaxBytes)*float64(s.Msgs)/float64(s.Bytes))
	}
	if math.IsInf(limit, 1) {
		return 0
	}
	return limit
}

// retentionLimited is the RetentionLimited rule: the stream has a limit
// that removes messages (age, or count, size or per-subject count with
// old messages discarded).
func retentionLimited(s *StreamSample) bool {
	return s.MaxAge > 0 || (!s.DiscardNew && (s.MaxMsgs > 0 || s.MaxBytes > 0)) || s.MaxMsgsPerSubject > 0
}

// behindCount is how many of the stream's messages stand from the node's
// oldest undelivered one on: what must fit under the stream's message
// limit for that one to stay. For a consumer of the whole stream it is
// NumPending exactly; for a filtered one, the messages stored minus those
// older than its next undelivered sequence (next), at most: on interest
// and work-queue streams some of those are already gone.
func behindCount(filtered bool, pending, msgs, next, first uint64) float64 {
	if !filtered {
		return float64(pending)
	}
	older := uint64(0)
	if next > first && first > 0 {
		older = next - first
	}
	if older >= msgs {
		return 0
	}
	return float64(msgs - older)
}

// forecast is what lossForecast reads of one node.
type forecast struct {
	pending    uint64  // NumPending: messages not yet delivered
	underway   bool    // the stream's first sequence already passed the node
	limit      float64 // msgLimit; 0 for none
	behind     float64 // behindCount
	behindRate float64 // how fast it grows were no message removed: arrivals less deliveries
	maxAge     float64 // MaxAge in seconds; 0 for none
	age        float64 // age of the oldest undelivered message; < 0 unknown
	ageRate    float64 // its change per second over the window
}

// lossForecast is the SecondsToLoss rule: when, at the window's rates, the
// stream's limits start removing a message the node has not been
// delivered. Under the message limit (MaxMsgs, or MaxBytes as a count),
// the messages from its oldest undelivered one on must fit: the room left
// shrinks as fast as its work arrives faster than it is delivered. Under
// MaxAge its oldest undelivered
// message must be delivered before it is that old: the room left shrinks
// at the rate its age grows (1/s for a node that does not move, less for
// one that moves slower than its stream). The earlier of the two; 0 when
// no room is left or loss is under way (messages were lost since the last
// sample, or the stream's first sequence already passed the node); -1 when
// nothing is undelivered or neither room shrinks.
//
// Interest and work-queue streams remove what has been acked: their first
// sequence racing ahead says nothing about a node, and their message count
// is what is still wanted. Counting from the node's own position, as
// behindCount does, holds for them as for limits streams.
func lossForecast(f forecast) float64 {
	if f.pending == 0 {
		return -1
	}
	if f.underway {
		return 0
	}
	best := -1.0
	consider := func(room, rate float64) {
		switch {
		case room <= 0:
			best = 0
		case rate > 0:
			if t := room / rate; best < 0 || t < best {
				best = t
			}
		}
	}
	if f.limit > 0 {
		consider(f.limit-f.behind, f.behindRate)
	}
	if f.maxAge > 0 && f.age >= 0 {
		consider(f.maxAge-f.age, f.ageRate)
	}
	return best
}
