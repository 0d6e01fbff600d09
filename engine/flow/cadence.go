package flow

import (
	"math"
	"time"
)

// A node's ack cadence is what it has shown of its own rhythm: how long it
// normally stays silent while work waits before it acks again. A busy node
// acks between every two samples; a batch acker holds its messages for a
// few seconds; a node that pauses for GC or a flush goes quiet now and
// then. Each is stalled only when it has been silent clearly longer than
// its own normal, so one threshold never fits them all.
//
// A quiet spell runs from the stall onset (the last progress, or later the
// last idle sample or the start of watching) to the next progress. Samples
// see a spell only at sampling times: its length as measured is the longest
// silence sampled within it, which falls short of the truth by less than
// one interval. A spell that ended within one interval without being
// sampled counts as zero.

// cadence is the learned rhythm of one node, a few words of state.
type cadence struct {
	// max is a decaying maximum of the learned spells, in seconds, as of
	// at; it halves every CadenceHalfLife unless a spell renews it.
	max float64
	at  int64 // Unix nanoseconds
	// spells counts learned spells, saturating at CadenceSpells.
	spells int

	// The spell under way: the longest silence sampled in it (-1 when none
	// was sampled) and the consumer sequence delivered when it was first
	// sampled, which the ack floor must pass for a long spell to count.
	cur       float64
	curDeliv  uint64
	curActive bool
	// A long spell that ended before the ack floor caught up waits here: it
	// is learned once the node has finished what it held when it went
	// quiet, and dropped if a stall begins first.
	held      float64
	heldNeed  uint64
	heldValid bool
}

// decayed is the learned maximum at time at.
func (c *cadence) decayed(at int64, halfLife time.Duration) float64 {
	if c.max == 0 || at <= c.at || halfLife <= 0 {
		return c.max
	}
	return c.max * math.Exp2(-float64(at-c.at)/float64(halfLife))
}

func (c *cadence) learn(spell float64, at int64, cfg *Config) {
	c.max = max(spell, c.decayed(at, cfg.CadenceHalfLife))
	c.at = at
	if c.spells < cfg.CadenceSpells {
		c.spells++
	}
}

func (c *cadence) learned(cfg *Config) bool { return c.spells >= cfg.CadenceSpells }

// endSpell closes the spell under way when the node made progress. A spell
// no longer than twice the threshold in force is the node's rhythm
// widening and is learned at once. A longer one is learned only once the
// ack floor passes what the node had been delivered when it went quiet: a
// node that paused (GC, a flush, a batch) finishes the messages it held,
// while one that crashed and came back leaves them stranded until AckWait
// redelivers them, and its outage must not become its normal.
func (c *cadence) endSpell(at int64, threshold float64, ackFloor uint64, cfg *Config) {
	spell := 0.0
	if c.curActive {
		spell = c.cur
	}
	switch {
	case spell <= 2*threshold:
		c.learn(spell, at, cfg)
	case ackFloor >= c.curDeliv:
		c.learn(spell, at, cfg)
	default:
		c.held, c.heldNeed, c.heldValid = spell, c.curDeliv, true
	}
	c.curActive = false
}

// sample records the silence seen at one sample with work waiting.
func (c *cadence) sample(silence float64, delivered uint64) {
	if !c.curActive {
		c.cur, c.curDeliv, c.curActive = silence, delivered, true
		return
	}
	c.cur = max(c.cur, silence)
}

// settle learns a held spell once the ack floor has caught up.
func (c *cadence) settle(at int64, ackFloor uint64, cfg *Config) {
	if c.heldValid && ackFloor >= c.heldNeed {
		c.learn(c.held, at, cfg)
		c.heldValid = false
	}
}

// stallThreshold is the rule for how long a node may be silent while work
// waits before it is stalled: twice its learned cadence (the measured spell
// falls short of the truth by up to an interval, and a rhythm jitters), but
// never under one interval, which is as fine as sampling can see, nor over
// the cap. Before the cadence is learned, the cautious prior.
//
// The cap is the consumer's AckWait where known: a message held longer is
// redelivered, so no healthy rhythm is slower. Without one, JetStream's
// default AckWait of 30s.
func stallThreshold(learnedMax float64, learned bool, prior, floor, ackWait time.Duration) float64 {
	capD := ackWait
	if capD <= 0 {
		capD = 30 * time.Second
	}
	lo, hi := floor.Seconds(), max(capD.Seconds(), floor.Seconds())
	v := prior.Seconds()
	if learned {
		v = 2 * learnedMax
	}
	return min(max(v, lo), hi)
}

// stalls remembers when a node's recent stalls began, for flapping.
type stalls struct {
	starts [8]int64 // ring of stall onsets, Unix nanoseconds
	n      int      // how many are in the ring
	next   int
	in     bool  // stalled at the last sample
	endAt  int64 // when the last stall ended; 0 if none yet
}

// note records whether the node is stalled at this sample, onset being
// when the stall began.
func (s *stalls) note(stalled bool, at, onset int64) {
	switch {
	case stalled && !s.in:
		s.starts[s.next] = onset
		s.next = (s.next + 1) % len(s.starts)
		s.n = min(s.n+1, len(s.starts))
	case !stalled && s.in:
		s.endAt = at
	}
	s.in = stalled
}

// recent counts the stalls that began within window before at.
func (s *stalls) recent(at int64, window time.Duration) int {
	n := 0
	for i := 0; i < s.n; i++ {
		if at-s.starts[i] <= int64(window) {
			n++
		}
	}
	return n
}

// sinceStall is the SecondsSinceStall rule: 0 while stalled, else since the
// last stall ended, else since watching began.
func (s *stalls) sinceStall(at int64, observedSince time.Time) float64 {
	switch {
	case s.in:
		return 0
	case s.endAt != 0:
		return nonNegSeconds(time.Duration(at - s.endAt))
	}
	return nonNegSeconds(time.Unix(0, at).Sub(observedSince))
}

// isIdle is the Idle rule: nothing waiting and no progress within the
// node's own stall threshold, so nothing it shows can be judged. A node
// that acked recently with nothing left is flowing, not idle.
func isIdle(waiting int, at, progress time.Time, threshold float64) bool {
	if waiting > 0 {
		return false
	}
	return progress.IsZero() || at.Sub(progress).Seconds() >= threshold
}
