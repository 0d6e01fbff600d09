package flow

import (
	"math"
	"slices"
	"time"
)

// This file holds the metric rules, one small pure function each, so every
// definition can be read and tested on its own. The Tracker only gathers the
// inputs and calls them.

// point is the time and depth of one sample, kept apart from the counters
// so the slope reads a compact run of memory.
type point struct {
	at      int64   // server time, Unix nanoseconds
	waiting float64 // MessagesWaiting
}

// counts are the cumulative counters of one sample. Counters that may step
// backwards for reasons other than a recreated consumer are kept as running
// sums of clamped steps, so a rate over the window is last minus first with
// no negative steps in between.
type counts struct {
	delivered uint64 // Delivered (consumer sequence), or a stream's LastSeq
	acked     uint64 // running sum of clamped steps of Delivered - NumAckPending
	arrived   uint64 // running sum of clamped steps of NumPending + Delivered
	naks      uint64 // running sums of clamped steps of the advisory counters
	maxDel    uint64
	term      uint64
	lost      uint64 // messages lost so far (lossStep)

	// age is a gauge whose change over the window the loss forecast reads:
	// the age of the oldest message the node has not been delivered, in
	// seconds.
	age float64
}

// window holds the samples of the recent past in reusable buffers: live
// samples are pts[lo:hi] and cnt[lo:hi]. It compacts in place or grows, so a
// node in steady state appends without allocating.
type window struct {
	pts    []point
	cnt    []counts
	lo, hi int
}

func (w *window) len() int { return w.hi - w.lo }

func (w *window) points() []point { return w.pts[w.lo:w.hi] }

func (w *window) clear() { w.lo, w.hi = 0, 0 }

// newest returns the latest sample, if any.
func (w *window) newest() (point, counts, bool) {
	if w.hi == w.lo {
		return point{}, counts{}, false
	}
	return w.pts[w.hi-1], w.cnt[w.hi-1], true
}

// oldest returns the earliest sample; the window must not be empty.
func (w *window) oldest() (point, counts) { return w.pts[w.lo], w.cnt[w.lo] }

func (w *window) push(p point, c counts) {
	if w.hi == len(w.pts) {
		n := w.hi - w.lo
		if w.lo >= len(w.pts)/2 && w.lo > 0 {
			// Half the buffer is dead: move the live part down. Each live
			// sample is copied at most once per len/2 pushes.
			copy(w.pts, w.pts[w.lo:w.hi])
			copy(w.cnt, w.cnt[w.lo:w.hi])
		} else {
			size := max(2*len(w.pts), 16)
			pts, cnt := make([]point, size), make([]counts, size)
			copy(pts, w.pts[w.lo:w.hi])
			copy(cnt, w.cnt[w.lo:w.hi])
			w.pts, w.cnt = pts, cnt
		}
		w.lo, w.hi = 0, n
	}
	w.pts[w.hi], w.cnt[w.hi] = p, c
	w.hi++
}

// trim applies the window rule: keep the samples newer than newest-span,
// plus the latest one at or before that cut, so the window covers about span
// once enough history exists.
func (w *window) trim(span int64) {
	if w.hi == w.lo {
		return
	}
	cut := w.pts[w.hi-1].at - span
	for w.hi-w.lo >= 2 && w.pts[w.lo+1].at <= cut {
		w.lo++
	}
}

// spanSeconds is the time the window covers.
func spanSeconds(w []point) float64 {
	if len(w) < 2 {
		return 0
	}
	return float64(w[len(w)-1].at-w[0].at) / 1e9
}

// rate is the rule for every per-second rate (DeliveryRate, AckRate,
// ArrivalRate, NakRate, MaxDeliveriesRate, TerminatedRate, a stream's
// publish rate): the counter's change over the window divided by the span.
// With no span (fewer than two samples, or all at one instant) it is 0, and
// a counter lower at the end than at the start counts as no change.
func rate(first, last uint64, span float64) float64 {
	if span <= 0 || last <= first {
		return 0
	}
	return float64(last-first) / span
}

// clampStep is the rule for counters whose drops are not negative work: a
// step from prev to cur counts max(0, cur-prev).
func clampStep(prev, cur int64) uint64 {
	if cur <= prev {
		return 0
	}
	return uint64(cur - prev)
}

// clampStepU is clampStep for unsigned counters.
func clampStepU(prev, cur uint64) uint64 {
	if cur <= prev {
		return 0
	}
	return cur - prev
}

// lagSlope is the LagGrowthRate rule: the least-squares slope of
// MessagesWaiting against time over the window, in messages per second. A
// slope resists a single noisy sample better than last-minus-first. Fewer
// than two samples, or all at one instant, give 0.
func lagSlope(w []point) float64 {
	n := len(w)
	if n < 2 {
		return 0
	}
	// Time relative to the newest sample keeps the numbers small and exact.
	t0 := w[n-1].at
	var sx, sy float64
	for i := range w {
		sx += float64(w[i].at-t0) / 1e9
		sy += w[i].waiting
	}
	mx, my := sx/float64(n), sy/float64(n)
	var sxy, sxx float64
	for i := range w {
		dx := float64(w[i].at-t0)/1e9 - mx
		sxy += dx * (w[i].waiting - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

// ewmaAlpha is the weight a new value gets in a baseline after dt, so that
// the old value's weight halves every halfLife whatever the sampling
// interval: alpha = 1 - exp(-ln2 * dt / halfLife). No time passed, no weight.
func ewmaAlpha(dt, halfLife time.Duration) float64 {
	if dt <= 0 {
		return 0
	}
	if halfLife <= 0 {
		return 1
	}
	return 1 - math.Exp(-math.Ln2*dt.Seconds()/halfLife.Seconds())
}

// baselineHalfLife is the half-life of a baseline that has learned for
// age: half its age, up to the configured one. A baseline cannot remember
// more than it has seen: with the full half-life from the start, its first
// value (a rate over a window not yet full, or a moment of unusual load)
// would weigh on it for minutes.
func baselineHalfLife(age, halfLife time.Duration) time.Duration {
	return min(max(age/2, time.Nanosecond), halfLife)
}

// rise is the ArrivalRise rule: the rate over its baseline. A tenth of a
// message a second on both sides keeps a node that had next to nothing
// from rising a thousandfold on its first messages.
func rise(rate, baseline float64) float64 {
	const eps = 0.1
	return (max(rate, 0) + eps) / (max(baseline, 0) + eps)
}

// median is the middle of xs (the mean of the two middles for an even
// count), 1 for none: no node, no rise. xs is reordered. It runs every
// tick over every judged node, so it selects rather than sorts: linear
// time on average.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 1
	}
	hi := nth(xs, n/2)
	if n%2 == 1 {
		return hi
	}
	// nth left the n/2 smallest values in xs[:n/2]: the other middle is
	// the largest of them.
	return (slices.Max(xs[:n/2]) + hi) / 2
}

// nth reorders xs so that xs[k] is the value a sort would put there, with
// no larger value before it and no smaller one after it, and returns it
// (Hoare's selection, with the middle of three as the pivot).
func nth(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}

// ewma is the baseline rule (AckRateBaseline, ArrivalRateBaseline,
// PublishRateBaseline): the first value initialises the baseline, each later
// one moves it by alpha.
func ewma(prev, x, alpha float64, initialised bool) float64 {
	if !initialised {
		return x
	}
	return prev + alpha*(x-prev)
}

// later returns the later of two times; a zero time is earlier than any.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// progressAt is the rule for when a node last made progress: the server's
// last ack time, which it stamps on every ack; where it has none (no ack
// since it started, or a consumer that needs none), the start of the newest
// sample step in which the acked estimate rose (zero if never seen). Zero
// means the node has never been seen to progress.
func progressAt(lastAck, ackRoseAt time.Time) time.Time {
	if !lastAck.IsZero() {
		return lastAck
	}
	return ackRoseAt
}

// stallOnset is the rule for when a possible stall began: the last
// progress, or if later the start of what cannot count against the node —
// when watching began (nothing before it, or before a gap in it, can be
// vouched for) or the last sample in which it had no work waiting (work
// that arrived after it cannot have waited longer). The latter lines up
// the stalls of nodes cut off together on a quiet stream: they all stop
// taking the first message that arrives after the cut.
func stallOnset(progress, notBefore time.Time) time.Time {
	return later(progress, notBefore)
}

// warmEnd is the rule for the end of warming when watching (re)starts at
// at: a full warm-up from then, or the failover grace after a failover if
// longer. A warm-up under way (prev) is not cut short, so a gap during a
// failover's grace does not end it early; but it never reaches further than
// the longer of the two from at, which bounds what a server clock that went
// back can leave behind.
func warmEnd(at, prev time.Time, warmUp, grace time.Duration, failover bool) time.Time {
	end := at.Add(warmUp)
	if failover {
		end = later(end, at.Add(grace))
	}
	if limit := at.Add(max(warmUp, grace)); prev.After(limit) {
		prev = limit
	}
	return later(prev, end)
}

// isWarming is the Warming rule: the node cannot be judged before warmUntil.
func isWarming(at, warmUntil time.Time) bool {
	return at.Before(warmUntil)
}

// isStalled is the Stalled rule: work is waiting, nothing has progressed for
// at least the node's stall threshold (seconds) since the onset, and the
// node is not warming. As warmEnd gives at least a full warm-up whenever
// watching restarts, the node has been watched without a gap for at least
// the warm-up, so a node that just appeared or just came back into view is
// not called stalled on too little evidence, and never while rules hold
// their judgement on it. An idle node (no work waiting) is never stalled.
func isStalled(waiting int, at, onset, warmUntil time.Time, threshold float64) bool {
	return waiting > 0 && at.Sub(onset).Seconds() >= threshold && !isWarming(at, warmUntil)
}

// isLagging is the Lagging rule: more work has been waiting throughout the
// node's own cadence (its lag floor) than the allowance, it grew over the
// window by at least minGrowth and it is not shrinking over the last two
// steps. The allowance is about one interval's arrivals (at least a
// handful of messages): what a node that keeps up can have waiting just
// after its acks, so in-flight messages and the backlog a batch acker
// builds and clears every cadence, however sampling falls on its sawtooth,
// do not count. The slope keeps a deep but shrinking backlog from counting;
// the last steps keep a burst being drained from counting while its step
// is still inside the window.
//
// Once lagging, a node stays so while its floor holds above the allowance,
// the window still grows at all and the last two steps did not shrink it
// by more than a wobble (one interval's arrivals, given as wobble): a slow
// node's lag moves by whole messages against noisy arrivals, and a rule's
// `for` must not start over at every wobble, while a backlog being drained
// shrinks by more.
func isLagging(lagFloor int, growth, recent, allowance, wobble, minGrowth float64, was bool) bool {
	if float64(lagFloor) < allowance {
		return false
	}
	if was {
		return growth > 0 && recent >= -wobble
	}
	return growth >= minGrowth && recent >= 0
}

// cadenceSpan is how far back the lag floor looks: the node's learned
// cadence plus two intervals. The learned cadence is a sampled silence,
// short of the true one by up to an interval, so the span holds a whole
// cadence and one interval more: at least one sample falls within an
// interval after one of its acks, however sampling lines up with its
// rhythm. For a busy node, the last three samples.
func cadenceSpan(learnedMax float64, interval time.Duration) int64 {
	return int64(learnedMax*1e9) + 2*int64(interval)
}

// lagFloor is the LagFloor rule: the least MessagesWaiting among the
// samples within span of the newest (at least the last two). A node that
// keeps up clears its backlog at least once per cadence; one that falls
// behind never gets below it.
func lagFloor(w []point, span int64) int {
	n := len(w)
	if n == 0 {
		return 0
	}
	least := w[n-1].waiting
	cut := w[n-1].at - span
	for i := n - 2; i >= 0; i-- {
		least = min(least, w[i].waiting)
		if w[i].at <= cut {
			break
		}
	}
	return int(least)
}

// recentGrowth is how much MessagesWaiting rose over the last two steps of
// the window (the last step alone when there is only one).
func recentGrowth(w []point) float64 {
	n := len(w)
	if n < 2 {
		return 0
	}
	return w[n-1].waiting - w[max(0, n-3)].waiting
}

// secondsSinceLastAck is the SecondsSinceLastAck rule: time since the last
// progress, or since the consumer was created when it never progressed (or
// since watching began when the creation time is unknown). Never negative:
// times from a server whose clock moved back read as 0.
func secondsSinceLastAck(at, progress, created, observedSince time.Time) float64 {
	from := progress
	if from.IsZero() {
		from = created
	}
	if from.IsZero() {
		from = observedSince
	}
	return nonNegSeconds(at.Sub(from))
}

// nonNegSeconds converts d to seconds, clamping negatives to 0.
func nonNegSeconds(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return d.Seconds()
}

// fraction is n/d, or 0 when d is 0.
func fraction(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// satInt converts a counter to int, saturating instead of wrapping.
func satInt(u uint64) int {
	if u > math.MaxInt {
		return math.MaxInt
	}
	return int(u)
}

// satAdd adds two counters, saturating instead of wrapping.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}
