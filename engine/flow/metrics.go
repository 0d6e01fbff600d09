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
// samples are pts[lo:hi]. It compacts in place, and grows only when more
// than three quarters of its buffer is live, so a node in steady state
// appends without allocating: at one sample a second and a 10s window, 11
// or 12 samples live in a buffer of 16.
//
// The counts of a sample, 64 bytes, are most of what a window would hold;
// it keeps them compact instead. Within a window every counter only grows
// (the tracker clears a window whose counter fell), and by little: each is
// kept as a 32-bit offset from base, the counts of an earlier sample.
// delivered, acked and arrived move at almost every sample (hot); naks,
// maxDel, term and lost rarely, and the age gauge is not 0 only on
// streams with a MaxAge, so those two are kept apart (rare), each
// allocated only once a value is not 0. A window whose counts do not fit
// (a counter that fell, a jump of 2^32 or more) keeps them whole in cnt
// until it is cleared: the numbers are the same either way, only the
// memory differs.
type window struct {
	pts    []point
	hot    []hotOffsets
	rare   *rareColumns // nil while every rare offset and age was 0
	cnt    []counts     // non-nil: counts kept whole, hot and rare unused
	base   baseCounts   // the offsets' origin
	lo, hi int32
}

// baseCounts are the counters of counts, without the age gauge.
type baseCounts struct {
	delivered, acked, arrived, naks, maxDel, term, lost uint64
}

// hotOffsets are a sample's fast-moving counters less base's.
type hotOffsets struct {
	delivered, acked, arrived uint32
}

// rareOffsets are a sample's slow-moving counters less base's.
type rareOffsets struct {
	naks, maxDel, term, lost uint32
}

// rareColumns hold what most windows never need, beside pts: each column
// is nil while all its values were 0.
type rareColumns struct {
	offs []rareOffsets
	ages []float64
}

// minWindow is a window's first buffer: room for the 12 samples a 10s
// window at 1s holds, with a quarter free so that compacting stays rare.
const minWindow = 16

func (w *window) len() int { return int(w.hi - w.lo) }

func (w *window) points() []point { return w.pts[w.lo:w.hi] }

// clear empties the window; whole counts are given up for offsets again.
func (w *window) clear() {
	w.lo, w.hi = 0, 0
	w.cnt = nil
	w.rare = nil
}

// counts returns the counts of the sample at index i.
func (w *window) counts(i int32) counts {
	if w.cnt != nil {
		return w.cnt[i]
	}
	b, h := &w.base, &w.hot[i]
	c := counts{
		delivered: b.delivered + uint64(h.delivered),
		acked:     b.acked + uint64(h.acked),
		arrived:   b.arrived + uint64(h.arrived),
		naks:      b.naks, maxDel: b.maxDel, term: b.term, lost: b.lost,
	}
	if w.rare != nil {
		if w.rare.offs != nil {
			r := &w.rare.offs[i]
			c.naks += uint64(r.naks)
			c.maxDel += uint64(r.maxDel)
			c.term += uint64(r.term)
			c.lost += uint64(r.lost)
		}
		if w.rare.ages != nil {
			c.age = w.rare.ages[i]
		}
	}
	return c
}

// newest returns the latest sample, if any.
func (w *window) newest() (point, counts, bool) {
	if w.hi == w.lo {
		return point{}, counts{}, false
	}
	return w.pts[w.hi-1], w.counts(w.hi - 1), true
}

// newestAt is the latest sample's time; the window must not be empty.
func (w *window) newestAt() int64 { return w.pts[w.hi-1].at }

// oldest returns the earliest sample; the window must not be empty.
func (w *window) oldest() (point, counts) { return w.pts[w.lo], w.counts(w.lo) }

func (w *window) push(p point, c counts) {
	if w.hi == w.lo {
		w.lo, w.hi = 0, 0
		if w.cnt == nil {
			w.base = baseCounts{c.delivered, c.acked, c.arrived, c.naks, c.maxDel, c.term, c.lost}
			if len(w.hot) != len(w.pts) {
				// Counts were kept whole before the last clear.
				w.hot = make([]hotOffsets, len(w.pts))
			}
		}
	}
	if int(w.hi) == len(w.pts) {
		w.makeRoom()
	}
	w.pts[w.hi] = p
	if w.cnt == nil && !w.putOffsets(w.hi, c) {
		w.rebase()
		if !w.putOffsets(w.hi, c) {
			w.widen()
		}
	}
	if w.cnt != nil {
		w.cnt[w.hi] = c
	}
	w.hi++
}

// putOffsets stores c at index i, just past the newest sample, as offsets
// from base, reporting false when they do not fit or a counter fell.
func (w *window) putOffsets(i int32, c counts) bool {
	b := &w.base
	d, okD := offset(b.delivered, c.delivered)
	a, okA := offset(b.acked, c.acked)
	r, okR := offset(b.arrived, c.arrived)
	n, okN := offset(b.naks, c.naks)
	m, okM := offset(b.maxDel, c.maxDel)
	t, okT := offset(b.term, c.term)
	l, okL := offset(b.lost, c.lost)
	if !(okD && okA && okR && okN && okM && okT && okL) {
		return false
	}
	ho := hotOffsets{delivered: d, acked: a, arrived: r}
	ro := rareOffsets{naks: n, maxDel: m, term: t, lost: l}
	if i > w.lo {
		// Every counter must be at least the newest's, or rebase could
		// not keep offsets from the oldest.
		ph := &w.hot[i-1]
		var pr rareOffsets
		if w.rare != nil && w.rare.offs != nil {
			pr = w.rare.offs[i-1]
		}
		if d < ph.delivered || a < ph.acked || r < ph.arrived ||
			n < pr.naks || m < pr.maxDel || t < pr.term || l < pr.lost {
			return false
		}
	}
	w.hot[i] = ho
	if ro != (rareOffsets{}) || c.age != 0 {
		if w.rare == nil {
			w.rare = &rareColumns{}
		}
		if ro != (rareOffsets{}) && w.rare.offs == nil {
			w.rare.offs = make([]rareOffsets, len(w.pts))
		}
		if c.age != 0 && w.rare.ages == nil {
			w.rare.ages = make([]float64, len(w.pts))
		}
	}
	if w.rare != nil {
		if w.rare.offs != nil {
			w.rare.offs[i] = ro
		}
		if w.rare.ages != nil {
			w.rare.ages[i] = c.age
		}
	}
	return true
}

// offset is v less base, if that fits 32 bits.
func offset(base, v uint64) (uint32, bool) {
	if v < base || v-base > math.MaxUint32 {
		return 0, false
	}
	return uint32(v - base), true
}

// rebase moves base to the oldest live sample, keeping offsets small as
// the window slides. Live counts never fall (putOffsets), so they still fit.
func (w *window) rebase() {
	if w.cnt != nil || w.hi == w.lo {
		return
	}
	c := w.counts(w.lo)
	nb := baseCounts{c.delivered, c.acked, c.arrived, c.naks, c.maxDel, c.term, c.lost}
	h0 := w.hot[w.lo]
	for i := w.lo; i < w.hi; i++ {
		h := &w.hot[i]
		h.delivered -= h0.delivered
		h.acked -= h0.acked
		h.arrived -= h0.arrived
	}
	if w.rare != nil && w.rare.offs != nil {
		offs := w.rare.offs
		r0 := offs[w.lo]
		for i := w.lo; i < w.hi; i++ {
			r := &offs[i]
			r.naks -= r0.naks
			r.maxDel -= r0.maxDel
			r.term -= r0.term
			r.lost -= r0.lost
		}
	}
	w.base = nb
}

// widen keeps the live samples' counts whole from now on.
func (w *window) widen() {
	cnt := make([]counts, len(w.pts))
	for i := w.lo; i < w.hi; i++ {
		cnt[i] = w.counts(i)
	}
	w.cnt, w.hot, w.rare = cnt, nil, nil
}

// makeRoom frees the end of the buffers for a push: it moves the live
// samples down when at most three quarters of the buffer is live, and
// otherwise doubles it. A buffer grown for a spell of dense samples
// halves again once the live samples fill no more than three quarters of
// the half.
func (w *window) makeRoom() {
	n := int(w.hi - w.lo)
	size := len(w.pts)
	switch {
	case size == 0:
		size = minWindow
	case n > size*3/4:
		size *= 2
	case size > minWindow && n <= size*3/8:
		size /= 2
	}
	w.pts = moved(w.pts, w.lo, w.hi, size)
	if w.cnt != nil {
		w.cnt = moved(w.cnt, w.lo, w.hi, size)
	} else {
		w.hot = moved(w.hot, w.lo, w.hi, size)
		if w.rare != nil && w.rare.offs != nil {
			w.rare.offs = moved(w.rare.offs, w.lo, w.hi, size)
		}
		if w.rare != nil && w.rare.ages != nil {
			w.rare.ages = moved(w.rare.ages, w.lo, w.hi, size)
		}
	}
	w.lo, w.hi = 0, int32(n)
	w.rebase()
}

// moved returns s with s[lo:hi] moved to its start, in place when s has
// size elements and in a new buffer of size otherwise.
func moved[T any](s []T, lo, hi int32, size int) []T {
	if len(s) == size {
		copy(s, s[lo:hi])
		return s
	}
	out := make([]T, size)
	copy(out, s[lo:hi])
	return out
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
