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
	// The flags of the spell under way and of the held one, below, are
	// together here so the struct has no padding between its words.
	curHeld    bool
	curPresent bool
	curActive  bool
	heldValid  bool

	// The spell under way: the longest silence sampled in it, the consumer
	// sequence delivered when it was first sampled, whether the node held
	// fresh messages then (delivered after its last ack, not yet acked),
	// and whether it was present (asking for messages: an open pull
	// request, or a bound push subscriber) at every sample of it.
	cur      float64
	curThr   float64 // the lowest stall threshold in force during it
	curDeliv uint64
	curAt    int64 // when it was first sampled, Unix nanoseconds
	// A long spell that ended before the ack floor caught up waits here: it
	// is learned once the node has finished what it held when it went
	// quiet, and dropped if a stall begins first or AckWait passes: by
	// then the server may have redelivered what it held, and another
	// client's acks would pass the floor for it.
	held       float64
	heldNeed   uint64
	heldBefore int64 // Unix nanoseconds
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
// no longer than the threshold in force throughout it (the lowest: a client
// back from a crash is present, which raises it at the end) was no stall
// and is learned at once. A longer one is learned only with evidence that the node was there
// all along: it kept asking for messages throughout (a pause, a slow
// batch), or it
// held messages when it went quiet and has finished them since (a fetch
// loop acking a batch at its end, a client whose buffer was full). A node
// that crashed and came back shows neither: its pull requests died with its
// connection, and what it held stays stranded until AckWait redelivers it.
// Its outage must not become its normal, or the next crash goes unseen.
func (c *cadence) endSpell(at int64, ackFloor uint64, ackWait time.Duration, cfg *Config) {
	spell := 0.0
	if c.curActive {
		spell = c.cur
	}
	switch {
	case spell <= c.curThr || c.curPresent:
		c.learn(spell, at, cfg)
	case c.curHeld && ackFloor >= c.curDeliv:
		c.learn(spell, at, cfg)
	case c.curHeld:
		if ackWait <= 0 {
			ackWait = defaultAckWait
		}
		c.held, c.heldNeed, c.heldBefore, c.heldValid = spell, c.curDeliv, c.curAt+int64(ackWait), true
	}
	c.curActive = false
}

// sample records the silence seen at one sample with work waiting.
func (c *cadence) sample(at int64, silence, threshold float64, delivered uint64, held, present bool) {
	if !c.curActive {
		c.cur, c.curThr, c.curDeliv, c.curHeld, c.curPresent, c.curActive = silence, threshold, delivered, held, present, true
		c.curAt = at
		return
	}
	c.cur = max(c.cur, silence)
	c.curThr = min(c.curThr, threshold)
	// Present throughout: a client that comes back after a crash is present
	// at the last samples of its outage, not at the first.
	c.curPresent = c.curPresent && present
}

// stallBegan drops a held spell: a stall that begins before a long spell
// was settled says that spell was no rhythm of the node's.
func (c *cadence) stallBegan() { c.heldValid = false }

// settle learns a held spell once the ack floor has caught up.
func (c *cadence) settle(at int64, ackFloor uint64, cfg *Config) {
	switch {
	case !c.heldValid:
	case at > c.heldBefore:
		c.heldValid = false
	case ackFloor >= c.heldNeed:
		c.learn(c.held, at, cfg)
		c.heldValid = false
	}
}

// defaultAckWait is JetStream's AckWait when a consumer sets none.
const defaultAckWait = 30 * time.Second

// stallThreshold is the rule for how long a node may be silent while work
// waits before it is stalled: twice its learned cadence (the measured spell
// falls short of the truth by up to an interval, and a rhythm jitters), but
// never under one interval, which is as fine as sampling can see, nor over
// the cap. Before the cadence is learned, the cautious prior at least.
//
// A node that is present (it keeps a pull request open, or a subscriber on
// its push subject) while silent is alive but not acking: a pause, a slow
// batch, or a stuck handler. It gets the prior at least, as a pause it has
// never shown is more likely than a handler stuck for good; a node that is
// absent (its client is gone) gets its own cadence alone, so a crash or a
// cut link is seen within an interval or two.
//
// The cap is the consumer's AckWait where known: a message held longer is
// redelivered, so no healthy rhythm is slower. Without one, JetStream's
// default AckWait of 30s.
func stallThreshold(learnedMax float64, learned, present bool, prior, floor, ackWait time.Duration) float64 {
	capD := ackWait
	if capD <= 0 {
		capD = defaultAckWait
	}
	lo, hi := floor.Seconds(), max(capD.Seconds(), floor.Seconds())
	v := 2 * learnedMax
	if !learned || present {
		v = max(v, prior.Seconds())
	}
	return min(max(v, lo), hi)
}

// stalls remembers when a node's recent stalls began, for flapping.
type stalls struct {
	starts [8]int64 // ring of stall onsets, Unix nanoseconds
	n      int8     // how many are in the ring
	next   int8
	in     bool  // stalled at the last sample
	endAt  int64 // when the last stall ended; 0 if none yet
}

// note records whether the node is stalled at this sample, onset being
// when the stall began.
func (s *stalls) note(stalled bool, at, onset int64) {
	switch {
	case stalled && !s.in:
		s.starts[s.next] = onset
		s.next = (s.next + 1) % int8(len(s.starts))
		s.n = min(s.n+1, int8(len(s.starts)))
	case !stalled && s.in:
		s.endAt = at
	}
	s.in = stalled
}

// recent counts the stalls that began within window before at.
func (s *stalls) recent(at int64, window time.Duration) int {
	n := 0
	for i := range int(s.n) {
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

// unvouched is true while a node with work waiting has shown no progress
// since watching began at observedSince, and has not been watched for its
// threshold yet: whether it is stalled is unknown.
func unvouched(waiting int, at, progress, observedSince time.Time, threshold float64) bool {
	return waiting > 0 && !progress.After(observedSince) && at.Sub(observedSince).Seconds() < threshold
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
