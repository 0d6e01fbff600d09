package flowsim

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// Event is one entry of a run's timeline: a fault applied, a consumer
// created or deleted.
type Event struct {
	At   time.Duration // since the start
	What string
}

func (e Event) String() string { return fmt.Sprintf("%8.2fs %s", e.At.Seconds(), e.What) }

// Sim runs one Scenario. It is not safe for concurrent use.
type Sim struct {
	sc  Scenario
	rng *rand.Rand

	now    time.Duration // simulated time since the start
	tick   int
	faults []Fault // sorted by At
	next   int     // first fault not yet applied

	streams  []*stream
	byStream map[string]*stream
	cons     []*consumer
	byID     map[string]*consumer

	events []Event
	err    error
	prev   map[string]flow.ConsumerSample // last sample of each consumer, for checks
	// wasAlive says whether each consumer's client was alive at its last
	// sample: one crashed throughout may not ack.
	wasAlive map[string]bool
}

type loadMod struct {
	at, rise, hold time.Duration
	factor         float64
}

func (l loadMod) at_(t time.Duration) float64 {
	switch {
	case t < l.at:
		return 1
	case l.rise > 0 && t < l.at+l.rise:
		return 1 + (l.factor-1)*float64(t-l.at)/float64(l.rise)
	case l.hold == 0 || t < l.at+l.rise+l.hold:
		return l.factor
	}
	return 1
}

type stream struct {
	Stream
	lastSeq   uint64
	loads     []loadMod
	nextBurst time.Duration
	burstEnd  time.Duration
	nextMsg   time.Duration // Trickle, Batches
	carry     float64       // fractional messages of a multiplied batch
	// hist records when the sequence moved: hist[i] is reached at histAt[i].
	// It dates messages, so a consumer's time lag is known exactly.
	hist   []uint64
	histAt []time.Duration
}

// mult is the load multiplier at t.
func (s *stream) mult(t time.Duration) float64 {
	m := 1.0
	for _, l := range s.loads {
		m *= l.at_(t)
	}
	return m
}

// publishedAt returns when message seq was published; seq must exist.
func (s *stream) publishedAt(seq uint64) time.Duration {
	i, _ := slices.BinarySearch(s.hist, seq)
	if i >= len(s.hist) {
		return -1
	}
	return s.histAt[i]
}

// batch is a run of consecutive stream messages delivered together.
type batch struct {
	n     int
	seq   uint64        // stream sequence of the first message
	cseq  uint64        // consumer sequence of its first delivery (this one)
	at    time.Duration // delivered at
	redel bool          // delivered before: a redelivery
}

type consumer struct {
	Consumer
	st *stream

	exists, gone bool
	alive        bool
	created      time.Time

	deliveredStream uint64 // stream sequence of the last new delivery
	delivered       uint64 // consumer sequence: every delivery, redeliveries too
	buf             []batch
	done            []batch
	orphans         []batch // held by a client that crashed; due AckWait after delivery
	bufN, doneN     int
	orphN           int
	credit          float64
	lastAck         time.Time
	lastDelivery    time.Time
	ackPhase        time.Duration // AckInterval: acks happen at ackPhase + k*Every
	nextAck         time.Duration
	pausePhase      time.Duration
	maxLag          time.Duration
}

func (c *consumer) ackPending() int { return c.bufN + c.doneN + c.orphN }

func (c *consumer) prefetch() int {
	if c.Prefetch > 0 {
		return c.Prefetch
	}
	if c.Capacity <= 0 {
		return 500
	}
	return min(max(int(2*c.Capacity), 10), 500)
}

// New returns a simulation of sc at its start, before the first sample.
func New(sc Scenario) *Sim {
	sc = sc.withDefaults()
	s := &Sim{
		sc:       sc,
		rng:      rand.New(rand.NewPCG(sc.Seed, 0x666c6f7773696d)),
		byStream: map[string]*stream{},
		byID:     map[string]*consumer{},
		prev:     map[string]flow.ConsumerSample{},
		wasAlive: map[string]bool{},
	}
	s.faults = slices.Clone(sc.Faults)
	slices.SortStableFunc(s.faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	for _, def := range sc.Streams {
		st := &stream{Stream: def, lastSeq: def.InitialSeq}
		st.hist, st.histAt = []uint64{st.lastSeq}, []time.Duration{0}
		// Random phases, so streams do not burst or batch in step.
		switch def.Publish.Kind {
		case Bursty:
			st.nextBurst = time.Duration(s.rng.Float64() * float64(def.Publish.BurstEvery))
		case Trickle:
			st.nextMsg = time.Duration(s.rng.ExpFloat64() * float64(def.Publish.Gap))
		case Batches:
			st.nextMsg = time.Duration(s.rng.Float64() * float64(def.Publish.Every))
		}
		s.streams = append(s.streams, st)
		s.byStream[def.Name] = st
	}
	for _, def := range sc.Consumers {
		if def.MaxAckPending <= 0 {
			def.MaxAckPending = DefaultMaxAckPending
		}
		if def.AckWait <= 0 {
			def.AckWait = DefaultAckWait
		}
		c := &consumer{Consumer: def, st: s.byStream[def.Stream]}
		if c.st == nil {
			panic(fmt.Sprintf("flowsim: consumer %s reads unknown stream %q", def.ID, def.Stream))
		}
		if def.Ack.Kind == AckInterval && def.Ack.Every > 0 {
			c.ackPhase = time.Duration(s.rng.Float64() * float64(def.Ack.Every))
			c.nextAck = c.ackPhase
		}
		if def.Pause.Every > 0 {
			c.pausePhase = time.Duration(s.rng.Float64() * float64(def.Pause.Every))
		}
		if def.CreatedAt <= 0 {
			// Created long ago and caught up with its stream.
			c.exists, c.alive = true, true
			c.created = sc.Start.Add(-time.Duration(1+s.rng.IntN(100)) * time.Hour)
			c.deliveredStream = c.st.lastSeq
			c.delivered = c.st.lastSeq - uint64(s.rng.Float64()*0.5*float64(c.st.lastSeq))
			if c.delivered > 0 {
				quiet := time.Duration(s.rng.Float64() * float64(time.Second))
				if c.st.Publish.Kind == Silent {
					quiet = time.Duration(10+s.rng.IntN(120)) * time.Minute
				}
				c.lastAck = sc.Start.Add(-quiet)
				c.lastDelivery = c.lastAck
			}
		}
		s.cons = append(s.cons, c)
		s.byID[def.ID] = c
	}
	return s
}

// Scenario returns the scenario run, defaults filled in.
func (s *Sim) Scenario() Scenario { return s.sc }

// Events returns the timeline so far.
func (s *Sim) Events() []Event { return s.events }

// Err returns the first broken invariant of the model seen in a sample
// (counters that cannot happen on a real server), or nil. Tests check it so
// that a detector is never blamed for a simulator bug.
func (s *Sim) Err() error { return s.err }

// MaxTimeLag returns the longest a message waited for node id to finish it
// (ack it), as seen at the samples so far: the ground truth of whether the
// node kept up.
func (s *Sim) MaxTimeLag(id string) time.Duration {
	if c := s.byID[id]; c != nil {
		return c.maxLag
	}
	return 0
}

// Next advances to the next sampling tick and returns what a sampler reads
// there; false once the scenario's duration is over.
func (s *Sim) Next() (flow.Snapshot, bool) {
	s.tick++
	at := time.Duration(s.tick) * s.sc.Interval
	if j := s.sc.Jitter; j > 0 {
		at += time.Duration(s.rng.Int64N(int64(2*j)+1)) - j
		at = at.Round(time.Millisecond)
	}
	if at > s.sc.Duration {
		return flow.Snapshot{}, false
	}
	s.advance(at)
	return s.snapshot(), true
}

func (s *Sim) logf(format string, args ...any) {
	s.events = append(s.events, Event{At: s.now, What: fmt.Sprintf(format, args...)})
}

// advance simulates up to time to, in steps no longer than Step.
func (s *Sim) advance(to time.Duration) {
	for s.now < to {
		t0 := s.now
		dt := min(s.sc.Step, to-t0)
		s.applyFaults(t0)
		s.lifecycle(t0)
		t1 := t0 + dt
		for _, st := range s.streams {
			s.publish(st, t0, t1)
		}
		for _, c := range s.cons {
			if c.exists && c.alive {
				s.consume(c, t0, t1)
			}
		}
		s.now = t1
	}
}

func (s *Sim) applyFaults(t time.Duration) {
	for s.next < len(s.faults) && s.faults[s.next].At <= t {
		f := s.faults[s.next]
		s.next++
		s.logf("%s", f)
		switch f.Kind {
		case Crash:
			s.crash(s.byID[f.Node])
		case Restart:
			if c := s.byID[f.Node]; c != nil && c.exists && !c.alive {
				c.alive = true
				c.credit = 0
			}
		case Slow:
			if c := s.byID[f.Node]; c != nil {
				c.Capacity = max(f.Fraction*c.st.Publish.MeanRate()*c.st.mult(t), 0.01)
			}
		case CutGroup:
			for _, c := range s.cons {
				if c.Group == f.Group {
					s.crash(c)
				}
			}
		case Load:
			for _, st := range s.streams {
				if f.Stream == "" || f.Stream == st.Name {
					st.loads = append(st.loads, loadMod{at: f.At, rise: f.Rise, hold: f.Hold, factor: f.Factor})
				}
			}
		}
	}
}

// crash drops c's client: what it held stays ack-pending on the server.
func (s *Sim) crash(c *consumer) {
	if c == nil || !c.exists || !c.alive {
		return
	}
	c.alive = false
	// Older deliveries first: redelivery takes orphans in order.
	c.orphans = append(c.orphans, c.done...)
	c.orphans = append(c.orphans, c.buf...)
	c.orphN += c.bufN + c.doneN
	c.buf, c.done = c.buf[:0], c.done[:0]
	c.bufN, c.doneN = 0, 0
	c.credit = 0
}

func (s *Sim) lifecycle(t time.Duration) {
	for _, c := range s.cons {
		if !c.exists && !c.gone && c.CreatedAt > 0 && c.CreatedAt <= t {
			c.exists, c.alive = true, true
			c.created = s.sc.Start.Add(t)
			c.deliveredStream = c.st.lastSeq // it starts from new messages
			if c.Ack.Kind == AckInterval && c.Ack.Every > 0 {
				c.nextAck = t + c.ackPhase
			}
			s.logf("created %s", c.ID)
		}
		if c.exists && c.DeletedAt > 0 && c.DeletedAt <= t {
			c.exists, c.gone = false, true
			delete(s.prev, c.ID)
			s.logf("deleted %s", c.ID)
		}
	}
}

// poisson draws a Poisson count of mean l.
func (s *Sim) poisson(l float64) int {
	if l <= 0 {
		return 0
	}
	if l > 30 {
		return max(0, int(math.Round(l+math.Sqrt(l)*s.rng.NormFloat64())))
	}
	limit, k, p := math.Exp(-l), 0, s.rng.Float64()
	for p > limit {
		k++
		p *= s.rng.Float64()
	}
	return k
}

func (s *Sim) publish(st *stream, t0, t1 time.Duration) {
	p := st.Publish
	m := st.mult(t0)
	dt := (t1 - t0).Seconds()
	n := 0
	switch p.Kind {
	case Steady:
		n = s.poisson(p.Rate * m * dt)
	case Bursty:
		n = s.poisson(p.Rate * m * dt)
		if t0 >= st.nextBurst {
			st.burstEnd = st.nextBurst + p.BurstLen
			st.nextBurst += time.Duration((0.5 + s.rng.Float64()) * float64(p.BurstEvery))
		}
		if t0 < st.burstEnd {
			n += s.poisson(p.BurstRate * m * dt)
		}
	case Trickle:
		for st.nextMsg < t1 {
			n++
			st.nextMsg += time.Duration(s.rng.ExpFloat64() * float64(p.Gap) / m)
		}
	case Batches:
		for st.nextMsg < t1 {
			st.carry += float64(p.Batch) * m
			k := int(st.carry)
			st.carry -= float64(k)
			n += k
			st.nextMsg += time.Duration((0.8 + 0.4*s.rng.Float64()) * float64(p.Every))
		}
	}
	if n > 0 {
		st.lastSeq += uint64(n)
		st.hist = append(st.hist, st.lastSeq)
		st.histAt = append(st.histAt, t1)
	}
}

// consume runs one step of a live client: deliveries, processing, acks.
func (s *Sim) consume(c *consumer, t0, t1 time.Duration) {
	// Deliveries: due redeliveries first, then new messages, while the
	// client's buffer and MaxAckPending allow.
	room := min(c.prefetch()-c.bufN, c.MaxAckPending-c.ackPending())
	got := false
	for room > 0 && len(c.orphans) > 0 && c.orphans[0].at+c.AckWait <= t1 {
		b := c.orphans[0]
		k := min(room, b.n)
		c.buf = append(c.buf, batch{n: k, seq: b.seq, cseq: c.delivered + 1, at: t1, redel: true})
		c.bufN += k
		c.orphN -= k
		c.delivered += uint64(k)
		room -= k
		got = true
		if k == b.n {
			c.orphans = c.orphans[1:]
		} else {
			c.orphans[0].n -= k
			c.orphans[0].seq += uint64(k)
			c.orphans[0].cseq += uint64(k)
		}
	}
	if room > 0 && c.st.lastSeq > c.deliveredStream {
		k := int(min(uint64(room), c.st.lastSeq-c.deliveredStream))
		c.buf = append(c.buf, batch{n: k, seq: c.deliveredStream + 1, cseq: c.delivered + 1, at: t1})
		c.bufN += k
		c.deliveredStream += uint64(k)
		c.delivered += uint64(k)
		got = true
	}
	if got {
		c.lastDelivery = s.sc.Start.Add(t1)
	}

	if c.Pause.Every > 0 && (t0+c.pausePhase)%c.Pause.Every < c.Pause.For {
		return // paused: neither processing nor acking
	}

	// Processing, at capacity.
	k := c.bufN
	if c.Capacity > 0 {
		c.credit += c.Capacity * (t1 - t0).Seconds()
		k = min(k, int(c.credit))
		c.credit -= float64(k)
	}
	for k > 0 {
		b := &c.buf[0]
		take := min(k, b.n)
		c.done = append(c.done, batch{n: take, seq: b.seq, cseq: b.cseq, at: b.at, redel: b.redel})
		c.doneN += take
		c.bufN -= take
		k -= take
		if take == b.n {
			c.buf = c.buf[1:]
		} else {
			b.n -= take
			b.seq += uint64(take)
			b.cseq += uint64(take)
		}
	}
	if c.bufN == 0 {
		c.credit = 0 // an idle client banks no capacity
	}

	// Acks.
	ack := false
	switch c.Ack.Kind {
	case AckEach:
		ack = c.doneN > 0
	case AckInterval:
		if t1 >= c.nextAck {
			ack = c.doneN > 0
			for c.nextAck <= t1 {
				c.nextAck += c.Ack.Every
			}
		}
	case AckCount:
		ack = c.doneN >= c.Ack.Count
	}
	if ack {
		c.done, c.doneN = c.done[:0], 0
		c.lastAck = s.sc.Start.Add(t1)
	}
}

// snapshot reads every stream and existing consumer at the current time.
func (s *Sim) snapshot() flow.Snapshot {
	at := s.sc.Start.Add(s.now)
	snap := flow.Snapshot{At: at}
	for _, st := range s.streams {
		snap.Streams = append(snap.Streams, flow.StreamSample{Name: st.Name, At: at, LastSeq: st.lastSeq, Msgs: st.lastSeq})
	}
	for _, c := range s.cons {
		if !c.exists {
			continue
		}
		ackPending := c.ackPending()
		redel := 0
		minSeq := uint64(math.MaxUint64)
		// The ack floor is the consumer sequence just below the oldest
		// delivery not yet acked: messages stranded with a crashed client
		// hold it back while newer ones are acked, as on a real server.
		floor := c.delivered
		for _, list := range [][]batch{c.buf, c.done, c.orphans} {
			for _, b := range list {
				if b.redel {
					redel += b.n
				}
				if b.n > 0 {
					minSeq = min(minSeq, b.seq)
					floor = min(floor, b.cseq-1)
				}
			}
		}
		pending := c.st.lastSeq - c.deliveredStream
		if pending > 0 {
			minSeq = min(minSeq, c.deliveredStream+1)
		}
		if minSeq != math.MaxUint64 {
			if p := c.st.publishedAt(minSeq); p >= 0 {
				c.maxLag = max(c.maxLag, s.now-p)
			}
		}
		waiting := uint64(0)
		if c.alive {
			waiting = 1
		}
		cs := flow.ConsumerSample{
			Key:             flow.NodeKey{Stream: c.Stream, Consumer: c.ID},
			NodeID:          c.ID,
			Group:           c.Group,
			At:              at,
			Created:         c.created,
			NumPending:      pending,
			NumAckPending:   uint64(ackPending),
			NumRedelivered:  uint64(redel),
			NumWaiting:      waiting,
			Delivered:       c.delivered,
			DeliveredStream: c.deliveredStream,
			AckFloor:        floor,
			AckFloorStream:  c.deliveredStream - min(c.deliveredStream, uint64(ackPending)),
			LastDelivery:    c.lastDelivery,
			LastAck:         c.lastAck,
			AckWait:         c.AckWait,
		}
		s.check(c, cs)
		s.prev[c.ID] = cs
		s.wasAlive[c.ID] = c.alive
		snap.Consumers = append(snap.Consumers, cs)
	}
	// Listed as the sampler lists them: by stream, then by name.
	slices.SortFunc(snap.Consumers, func(a, b flow.ConsumerSample) int {
		return cmp.Or(cmp.Compare(a.Key.Stream, b.Key.Stream), cmp.Compare(a.Key.Consumer, b.Key.Consumer))
	})
	return snap
}

// check records the first sample a real server could not have produced.
func (s *Sim) check(c *consumer, cs flow.ConsumerSample) {
	if s.err != nil {
		return
	}
	fail := func(format string, args ...any) {
		s.err = fmt.Errorf("flowsim: %v: node %s: %s", s.now, c.ID, fmt.Sprintf(format, args...))
	}
	sum := 0
	for _, list := range [][]batch{c.buf, c.done, c.orphans} {
		for _, b := range list {
			sum += b.n
		}
	}
	switch {
	case sum != int(cs.NumAckPending) || c.bufN < 0 || c.doneN < 0 || c.orphN < 0:
		fail("ack pending %d but %d held (buf %d, done %d, orphans %d)", cs.NumAckPending, sum, c.bufN, c.doneN, c.orphN)
	case cs.NumAckPending > uint64(c.MaxAckPending):
		fail("ack pending %d over MaxAckPending %d", cs.NumAckPending, c.MaxAckPending)
	case cs.NumAckPending > cs.Delivered:
		fail("ack pending %d over delivered %d: acked more than delivered", cs.NumAckPending, cs.Delivered)
	case cs.DeliveredStream > c.st.lastSeq || cs.NumPending+cs.DeliveredStream != c.st.lastSeq:
		fail("pending %d + delivered stream seq %d != stream last seq %d", cs.NumPending, cs.DeliveredStream, c.st.lastSeq)
	case cs.LastAck.After(cs.At):
		fail("last ack %v after the sample %v", cs.LastAck, cs.At)
	case !c.alive && cs.NumWaiting != 0:
		fail("crashed yet %d pull requests waiting", cs.NumWaiting)
	}
	p, ok := s.prev[c.ID]
	if !ok || s.err != nil {
		return
	}
	switch {
	case cs.Delivered < p.Delivered:
		fail("delivered went back from %d to %d", p.Delivered, cs.Delivered)
	case cs.AckFloor < p.AckFloor:
		fail("acked (delivered - ack pending) went back from %d to %d", p.AckFloor, cs.AckFloor)
	case cs.NumPending+cs.Delivered < p.NumPending+p.Delivered:
		fail("pending + delivered went back: published messages vanished")
	case cs.LastAck.Before(p.LastAck):
		fail("last ack went back")
	case !c.alive && !s.wasAlive[c.ID] && !cs.LastAck.Equal(p.LastAck):
		fail("acked while crashed")
	}
}
