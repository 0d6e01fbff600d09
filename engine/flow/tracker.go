package flow

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// Config tunes the Tracker. Zero fields take the defaults below.
type Config struct {
	Interval time.Duration // the sampling interval; default 1s
	Window   time.Duration // rates and slopes span this much history; default 10s
	// StallAfter is how long a node whose ack cadence is not learned yet
	// may be silent while work waits before it counts as stalled; default
	// 10s. Once learned, the node's own cadence sets it (see stallThreshold).
	StallAfter time.Duration
	// CadenceSpells is how many quiet spells a node must have ended with
	// progress before its cadence counts as learned; default 4.
	CadenceSpells int
	// CadenceHalfLife is how fast a learned cadence forgets a long spell;
	// default 5m.
	CadenceHalfLife time.Duration
	// FlapWindow is how far back stalls count in RecentStalls; default 5m.
	FlapWindow       time.Duration
	WarmUp           time.Duration // a node must be watched this long without a gap before it can be stalled; default 3s
	FailoverGrace    time.Duration // after its consumer leader changes a node is warming this long and not stalled; default 10s
	LaggingSlope     float64       // msgs/s of lag growth that makes a node lagging; default 1
	LaggingFloor     int           // and at least this many messages waiting; default 10
	BaselineHalfLife time.Duration // EWMA half-life of baselines; default 60s
}

// Defaults of Config.
const (
	DefaultWindow = 10 * time.Second
	// DefaultStallAfter is long enough that a consumer batching its acks
	// every few seconds is not called stalled before its rhythm has been
	// seen, and short enough that a node dead from the start is reported
	// within seconds more than a learned one.
	DefaultStallAfter = 10 * time.Second
	// DefaultCadenceSpells: a busy node ends a spell at every sample, so it
	// is learned by the end of its warm-up; a batch acker after four
	// batches.
	DefaultCadenceSpells = 4
	// DefaultCadenceHalfLife keeps a pause seen once protecting the node
	// through pauses that recur every few minutes (GC, flushes, compaction),
	// while a node that stopped pausing is judged sharply again within
	// minutes.
	DefaultCadenceHalfLife = 5 * time.Minute
	// DefaultFlapWindow: a node that stalls again within five minutes of a
	// stall is flapping. Five minutes is where supervisors' restart back-off
	// tops out (Kubernetes' CrashLoopBackOff, systemd's usual limits), so a
	// crash loop stays inside the window however long it has run.
	DefaultFlapWindow       = 5 * time.Minute
	DefaultWarmUp           = 3 * time.Second
	DefaultFailoverGrace    = 10 * time.Second
	DefaultLaggingSlope     = 1.0
	DefaultLaggingFloor     = 10
	DefaultBaselineHalfLife = 60 * time.Second
)

// overloadFreeze is the lagging share at and above which the system's
// publish rate baseline stops learning, so an overload does not become the
// new normal.
const overloadFreeze = 0.5

// ForInterval returns the configuration the engine uses at a sampling
// interval: each default, or a multiple of the interval when that is longer,
// so a slow sampler still sees enough samples in every span.
func ForInterval(interval time.Duration) Config {
	return Config{
		Interval:      interval,
		StallAfter:    max(DefaultStallAfter, 10*interval),
		WarmUp:        max(DefaultWarmUp, 3*interval),
		FailoverGrace: max(DefaultFailoverGrace, 5*interval),
		Window:        max(DefaultWindow, 10*interval),
	}
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.StallAfter <= 0 {
		c.StallAfter = DefaultStallAfter
	}
	if c.CadenceSpells <= 0 {
		c.CadenceSpells = DefaultCadenceSpells
	}
	if c.CadenceHalfLife <= 0 {
		c.CadenceHalfLife = DefaultCadenceHalfLife
	}
	if c.FlapWindow <= 0 {
		c.FlapWindow = DefaultFlapWindow
	}
	if c.WarmUp <= 0 {
		c.WarmUp = DefaultWarmUp
	}
	if c.FailoverGrace <= 0 {
		c.FailoverGrace = DefaultFailoverGrace
	}
	if c.LaggingSlope == 0 {
		c.LaggingSlope = DefaultLaggingSlope
	}
	if c.LaggingFloor == 0 {
		c.LaggingFloor = DefaultLaggingFloor
	}
	if c.BaselineHalfLife <= 0 {
		c.BaselineHalfLife = DefaultBaselineHalfLife
	}
	return c
}

// Tracker turns a sequence of snapshots into flow metrics. It keeps a
// window of samples per node and per stream, and slow baselines. It is not
// safe for concurrent use; each State it returns belongs to the caller and
// is never touched again by the Tracker.
type Tracker struct {
	cfg Config

	tick  uint64 // counts updates; marks what was seen in which
	nodes map[NodeKey]*nodeState
	all   []*nodeState // every tracked node, for the sweep after each update
	// prevOrder is last update's observed nodes in input order: a sampler
	// that lists consumers the same way every tick finds each node without
	// hashing. order is being filled for the next update.
	prevOrder, order []*nodeState

	streams map[string]*streamState

	groupSlot map[string]int // group name -> index in groups
	groups    []groupAcc
	freeSlots []int
	active    []int // slots used this update

	unobservedStreams map[string]struct{} // scratch, refilled each update
	rises             []float64           // scratch: judged nodes' ArrivalRise

	alphaDt  time.Duration // last dt and half-life given to alpha, and its result
	alphaHL  time.Duration
	alphaVal float64

	base sysBaselines

	// The last update's streams: summed publish rate, whether any stream
	// had a rate, and how many were sampled (StreamTotals).
	pubRate  float64
	anyRate  bool
	nStreams int
}

// nodeState is what the Tracker remembers of one node between updates.
// There is one per node, so it is kept compact: times are Unix
// nanoseconds (noTime for none) rather than time.Time, 24 bytes with a
// pointer, and the flags share a word. At 10,000 nodes every 8 bytes here
// are 80 KB.
type nodeState struct {
	key NodeKey

	seen       uint64 // tick in which it was last observed
	unobserved uint64 // tick in which it was last listed unobserved

	gone bool // dropped as left; cached pointers to it are stale
	// restart makes the next observation the start of watching: set when
	// first seen, after Reset, after a gap and after a recreation.
	restart     bool
	lagging     bool // Lagging at the last sample, for its hysteresis
	baselineSet bool

	observedSince int64
	warmUntil     int64 // warming before this: see Node.Warming
	// leader is the last non-empty consumer leader read, kept across gaps
	// so a failover while the node was unreadable is still seen.
	leader    string
	ackRoseAt int64 // start of the newest step in which the acked estimate rose
	lastAck   int64 // the server's LastAck in the newest sample
	// idleAt is the latest sample with no work waiting: any work waiting
	// now arrived after it.
	idleAt        int64
	created       int64
	lastDelivered uint64

	loss   lossState
	cad    cadence // the node's learned ack cadence
	stalls stalls  // its recent stall episodes

	// The newest sample's raw counters, for the next step; valid while the
	// window is not empty. Its time and cumulative counts are the
	// window's newest.
	lastAcked   int64
	lastArrived uint64
	lastNaks    uint64
	lastMaxDel  uint64
	lastTerm    uint64

	win window

	ackBaseline, arrivalBaseline float64
	baselineFrom                 int64 // when its baselines began learning, Unix nanoseconds

	stream *streamState // cached lookup of key.Stream
	slot   int          // cached lookup of its group's slot
}

// noTime is a nodeState time that is not set: earlier than any other.
const noTime = math.MinInt64

func newNodeState(key NodeKey) *nodeState {
	return &nodeState{
		key: key, restart: true,
		observedSince: noTime, warmUntil: noTime, ackRoseAt: noTime,
		lastAck: noTime, idleAt: noTime, created: noTime,
	}
}

// unixNs is t in Unix nanoseconds, noTime for the zero time.
func unixNs(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

// fromNs is the time of unixNs's ns: the zero time for noTime.
func fromNs(ns int64) time.Time {
	if ns == noTime {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// streamState is what the Tracker remembers of one stream.
type streamState struct {
	name    string
	gone    bool
	seen    uint64
	win     window
	rate    float64
	hasRate bool // rate came from at least two samples over a positive span

	// For time lag and data loss: when its messages were published, and
	// the latest sample's first and last messages, count and limits.
	hist        seqHistory
	first, last seqTime
	msgs        uint64
	limited     bool    // retentionLimited
	limit       float64 // msgLimit
	maxAge      float64 // seconds; 0 for none
}

// groupAcc accumulates one group during an update.
type groupAcc struct {
	name        string
	tick        uint64
	g           Group
	first, last time.Time // earliest and latest stall onset among stalled nodes
}

// NewTracker returns a Tracker with cfg; zero fields take defaults.
func NewTracker(cfg Config) *Tracker {
	return &Tracker{
		cfg:               cfg.withDefaults(),
		nodes:             make(map[NodeKey]*nodeState),
		streams:           make(map[string]*streamState),
		groupSlot:         make(map[string]int),
		unobservedStreams: make(map[string]struct{}),
	}
}

// Config returns the configuration in force, defaults filled in.
func (t *Tracker) Config() Config { return t.cfg }

// Reset forgets every node's and stream's window and when watching began,
// for use after the engine was blind: rates must not span the blind time,
// and every node is warming, never stalled, until it has been watched again
// for the warm-up. Baselines, the last known progress and leader are kept.
func (t *Tracker) Reset() {
	for _, ns := range t.all {
		ns.win.clear()
		ns.restart = true
		ns.observedSince = noTime
	}
	for _, ss := range t.streams {
		ss.win.clear()
		ss.rate, ss.hasRate = 0, false
	}
}

// Update feeds one snapshot and returns the flow it shows.
//
// Per node, every time is the server's (ConsumerSample.At, else the
// snapshot's), and the window is the samples of the last Config.Window plus
// the one before. With fewer than two samples, or no time between them,
// every rate is 0.
//
//   - messagesWaiting = numPending + ackPending.
//   - deliveryRate: rate of Delivered (the consumer sequence).
//   - ackRate: rate of the acked estimate Delivered - NumAckPending, each
//     step clamped at 0. Messages dropped by MaxDeliver or stream limits
//     count as acked. Where the server stamps acks (it reports LastAck, or
//     LastDelivery for a consumer that takes acks), a step counts only if
//     LastAck moved: redeliveries raise the estimate too.
//   - arrivalRate: rate of NumPending + Delivered, each step clamped at 0.
//     A redelivery counts as new work, so it overstates under redelivery.
//   - lagGrowthRate: least-squares slope of messagesWaiting over the window.
//   - publishRate: the rate of its stream's LastSeq; 0 if the stream is not
//     in the snapshot.
//   - nakRate, maxDeliveriesRate, terminatedRate: rates of the advisory
//     counters, each step clamped at 0.
//   - ackRateBaseline, arrivalRateBaseline: EWMA with the configured
//     half-life (half the baseline's age while younger, see
//     baselineHalfLife) over the node's own sample spacing; only rates that
//     exist feed it, and the first initialises it. arrivalRise is
//     arrivalRate over its baseline.
//   - observedSeconds: since watching (re)began: first seen, after Reset,
//     after being unobserved, after the consumer was recreated (Created
//     changed or Delivered went backwards), the server's time went back, or
//     a failover: Leader changed from one server to another, across gaps
//     too (a first Leader, or none, is no failover).
//   - warming: for WarmUp after watching (re)began, and for FailoverGrace
//     after a failover; a warm-up under way is never cut short.
//   - secondsSinceLastAck: since the last progress (the server's LastAck;
//     without one, the start of the newest step in which the acked
//     estimate rose), else since Created, else since watching began.
//   - ackCadence, cadenceLearned, stallThreshold: the node's learned
//     rhythm and the silence it may keep while work waits (cadence.go).
//   - stalled: work waiting, no progress for stallThreshold since the
//     onset (the latest of the last progress, when watching began and the
//     last sample that was idle or paused), and not warming, so watched for
//     at least WarmUp. A paused consumer is never stalled. stalledSeconds
//     counts from the onset; recentStalls and secondsSinceStall remember
//     the stalls, a stall across a gap in watching being one.
//   - idle: nothing waiting and no progress within stallThreshold.
//   - lagFloor, lagging, fallingBehind: see isLagging and lagFloor.
//   - timeLagSeconds: the age of the message past the ack floor, from the
//     sample's OldestTime when the sampler read it; else estimated
//     (timeLagEstimated) from its stream's sequence and publish times (see
//     publishedAt), or without the stream from its rates (lagFromRates).
//   - secondsToDrain: see drainSeconds.
//   - messagesLost, lossRate: see lossStep; the rate is over the window.
//   - retentionLimited, secondsToLoss: see retentionLimited and
//     lossForecast; secondsToLoss is -1 on a stream without limits.
//
// Groups and the system sum and count their observed nodes, and take every
// fraction over their judged nodes (neither idle, warming nor paused); a
// fraction is 0 over an empty denominator. The system's publishRateBaseline
// and arrivalRateBaseline are EWMAs over the snapshot times, learning only
// while fewer than half the judged nodes lag (their first values too);
// arrivalRise is the median of the judged nodes' arrivalRise.
func (t *Tracker) Update(s Snapshot) *State {
	t.tick++
	st := &State{At: s.At}

	clear(t.unobservedStreams)
	for _, name := range s.UnobservedStreams {
		t.unobservedStreams[name] = struct{}{}
	}

	t.pubRate, t.anyRate, t.nStreams = t.updateStreams(&s)
	t.updateNodes(&s, st)
	t.sweep(&s, st)
	t.summarise(st, t.pubRate, t.nStreams)
	t.base.update(s.At, t.pubRate, t.anyRate, &st.System, t.cfg.BaselineHalfLife)
	return st
}

// StreamTotals returns what the last update read of its streams: their
// summed publish rate, whether any had a rate, and how many were sampled.
// A leader combining the nodes of engines that share the consumers takes
// the system's from its own tracker, which samples every stream
// (Aggregator).
func (t *Tracker) StreamTotals() (pubRate float64, anyRate bool, streams int) {
	return t.pubRate, t.anyRate, t.nStreams
}

// updateStreams samples every stream of s and returns the summed publish
// rate, whether any stream had a rate, and how many streams s holds.
func (t *Tracker) updateStreams(s *Snapshot) (sum float64, anyRate bool, n int) {
	for i := range s.Streams {
		in := &s.Streams[i]
		ss := t.streams[in.Name]
		if ss == nil {
			ss = &streamState{name: in.Name}
			t.streams[in.Name] = ss
		} else if ss.seen == t.tick {
			continue // listed twice: the first reading counts
		}
		ss.seen = t.tick
		n++
		at := in.At
		if at.IsZero() {
			at = s.At
		}
		atNs := at.UnixNano()
		// A LastSeq that went backwards means the stream was recreated; a
		// time that went backwards means another server's clock. Either way
		// the old samples say nothing about the new ones.
		if p, c, ok := ss.win.newest(); ok && (in.LastSeq < c.delivered || atNs < p.at) {
			ss.win.clear()
			ss.hist.clear()
		}
		ss.win.push(point{at: atNs}, counts{delivered: in.LastSeq})
		t.noteStream(ss, in, at)
		ss.win.trim(int64(t.cfg.Window))
		_, first := ss.win.oldest()
		span := spanSeconds(ss.win.points())
		ss.rate = rate(first.delivered, in.LastSeq, span)
		ss.hasRate = span > 0
		sum += ss.rate
		anyRate = anyRate || ss.hasRate
	}
	for name, ss := range t.streams {
		if ss.seen == t.tick {
			continue
		}
		if _, ok := t.unobservedStreams[name]; ok {
			continue // unread, not gone
		}
		ss.gone = true
		delete(t.streams, name)
	}
	return sum, anyRate, n
}

// noteStream keeps what time lag and loss read of a stream's sample. The
// last message's publish time is the server's; a sample without it (a
// test's, a recording's) stands in with its own time, by which the last
// message had been published.
func (t *Tracker) noteStream(ss *streamState, in *StreamSample, at time.Time) {
	last := seqTime{seq: in.LastSeq, at: at.UnixNano()}
	if !in.LastTime.IsZero() {
		last.at = in.LastTime.UnixNano()
	}
	if in.LastSeq > 0 {
		ss.hist.add(last)
	}
	ss.last = last
	ss.first = seqTime{seq: in.FirstSeq}
	if !in.FirstTime.IsZero() {
		ss.first.at = in.FirstTime.UnixNano()
	}
	ss.msgs = in.Msgs
	ss.limited = retentionLimited(in)
	ss.limit = msgLimit(in)
	ss.maxAge = in.MaxAge.Seconds()
}

// lookup finds the state of the node observed at position i, trying last
// update's order first.
func (t *Tracker) lookup(key NodeKey, i int) *nodeState {
	if i < len(t.prevOrder) {
		if ns := t.prevOrder[i]; !ns.gone && ns.key == key {
			return ns
		}
	}
	return t.nodes[key]
}

func (t *Tracker) updateNodes(s *Snapshot, st *State) {
	// A new slice every update, the tick's one allocation per node (a
	// Node, over 400 bytes): the engine keeps the last State for its
	// status view, its scrape-time node metrics and its lag history, and
	// reads it from other goroutines while the next update runs, so a
	// buffer reused across updates would be written under its readers.
	out := make([]Node, len(s.Consumers))
	t.prevOrder, t.order = t.order, t.prevOrder[:0]
	t.active = t.active[:0]
	sorted := true
	k := 0
	for i := range s.Consumers {
		c := &s.Consumers[i]
		ns := t.lookup(c.Key, k)
		if ns == nil {
			ns = newNodeState(c.Key)
			t.nodes[c.Key] = ns
			t.all = append(t.all, ns)
		} else if ns.seen == t.tick {
			continue // listed twice: the first reading counts
		}
		ns.seen = t.tick
		t.order = append(t.order, ns)

		n := &out[k]
		t.observe(ns, c, s.At, n)
		if k > 0 && sorted && compareKeys(out[k-1].Key, n.Key) > 0 {
			sorted = false
		}
		k++
		if c.Group != "" {
			t.addToGroup(ns, n)
		}
	}
	out = out[:k]
	// Drop pointers past the end so nodes that left can be collected.
	clear(t.order[len(t.order):cap(t.order)])
	if !sorted {
		slices.SortFunc(out, func(a, b Node) int { return compareKeys(a.Key, b.Key) })
	}
	st.Nodes = out
}

// CompareKeys orders node keys by stream, then consumer: the order of
// State.Nodes, Unobserved and Left.
func CompareKeys(a, b NodeKey) int { return compareKeys(a, b) }

func compareKeys(a, b NodeKey) int {
	if c := strings.Compare(a.Stream, b.Stream); c != 0 {
		return c
	}
	return strings.Compare(a.Consumer, b.Consumer)
}

// observe takes one reading of a node and writes its metrics to n.
func (t *Tracker) observe(ns *nodeState, c *ConsumerSample, snapAt time.Time, n *Node) {
	at := c.At
	if at.IsZero() {
		at = snapAt
	}
	atNs := at.UnixNano()

	// A consumer recreated under the same name is a new consumer: its
	// sequences restarted, its past says nothing about its present.
	recreated := (ns.created != noTime && !c.Created.IsZero() && unixNs(c.Created) != ns.created) ||
		c.Delivered < ns.lastDelivered
	if recreated {
		ns.win.clear()
		ns.restart = true
		ns.ackRoseAt = noTime
		ns.lastAck = noTime
		ns.cad, ns.stalls, ns.lagging = cadence{}, stalls{}, false
		ns.loss = lossState{}
	}
	// Server time that went backwards (another server now leads the
	// consumer) cannot be compared with what was gathered before.
	if ns.win.len() > 0 && atNs < ns.win.newestAt() {
		ns.win.clear()
		ns.restart = true
	}
	// A new consumer leader lost the pull requests held by the old one, and
	// clients ask again only after their own timeouts: the node is watched
	// afresh from the failover, with a grace before it can be judged. The
	// first leader read is no failover, nor is a leaderless reading.
	failover := c.Leader != "" && ns.leader != "" && c.Leader != ns.leader
	if c.Leader != "" && c.Leader != ns.leader {
		ns.leader = c.Leader
	}
	if ns.restart || failover {
		ns.observedSince = unixNs(at)
		ns.warmUntil = unixNs(warmEnd(at, fromNs(ns.warmUntil), t.cfg.WarmUp, t.cfg.FailoverGrace, failover))
		ns.restart = false
	}
	if !c.Created.IsZero() {
		ns.created = unixNs(c.Created)
	}
	ns.lastDelivered = c.Delivered

	// The acked estimate counts in consumer sequence space: every delivery
	// that is no longer pending an ack. Redeliveries and messages dropped by
	// MaxDeliver or stream limits count too, so it is an estimate.
	acked := int64(c.Delivered) - int64(c.NumAckPending)
	// New work: a message arriving raises NumPending; a delivery moves one
	// from NumPending to Delivered. A redelivery raises Delivered alone, so
	// under redelivery this overstates arrivals.
	arrived := satAdd(c.NumPending, c.Delivered)
	waiting := satAdd(c.NumPending, c.NumAckPending)

	cur := counts{delivered: c.Delivered}
	var dt time.Duration
	progressed := false
	if ns.win.len() > 0 {
		prevP, prev, _ := ns.win.newest()
		step := clampStep(ns.lastAcked, acked)
		// Where the server stamps its acks, an estimate that rose with no
		// new stamp counted redeliveries: a node that takes messages and
		// never acks them has made no progress. A server that stamps
		// deliveries stamps acks alike, so a consumer that takes acks and
		// has deliveries but no LastAck has acked nothing since it started.
		stamped := !c.LastAck.IsZero() || (!c.LastDelivery.IsZero() && !c.AckNone)
		if stamped && !c.LastAck.After(fromNs(ns.lastAck)) {
			step = 0
		}
		if step > 0 {
			ns.ackRoseAt = prevP.at
			progressed = true
		}
		cur.acked = prev.acked + step
		cur.arrived = prev.arrived + clampStepU(ns.lastArrived, arrived)
		cur.naks = prev.naks + clampStepU(ns.lastNaks, c.Naks)
		cur.maxDel = prev.maxDel + clampStepU(ns.lastMaxDel, c.MaxDeliveries)
		cur.term = prev.term + clampStepU(ns.lastTerm, c.Terminated)
		dt = time.Duration(atNs - prevP.at)
	}
	ss := t.streamOf(ns)
	if ss != nil && ss.seen != t.tick {
		ss = nil // not in this snapshot: nothing current to read
	}
	fc := t.lossInputs(ns, c, ss, at, &cur)

	ns.lastAcked, ns.lastArrived, ns.lastAck = acked, arrived, unixNs(c.LastAck)
	ns.lastNaks, ns.lastMaxDel, ns.lastTerm = c.Naks, c.MaxDeliveries, c.Terminated
	ns.win.push(point{at: atNs, waiting: float64(waiting)}, cur)
	ns.win.trim(int64(t.cfg.Window))

	w := ns.win.points()
	_, first := ns.win.oldest()
	last := &cur
	span := spanSeconds(w)

	id := c.NodeID
	if id == "" {
		id = c.Key.Consumer
	}
	*n = Node{
		Key:      c.Key,
		ID:       id,
		Stream:   c.Key.Stream,
		Consumer: c.Key.Consumer,
		Group:    c.Group,

		MessagesWaiting: satInt(waiting),
		NumPending:      satInt(c.NumPending),
		AckPending:      satInt(c.NumAckPending),
		Redelivered:     satInt(c.NumRedelivered),
		WaitingPulls:    satInt(c.NumWaiting),

		DeliveryRate:      rate(first.delivered, last.delivered, span),
		AckRate:           rate(first.acked, last.acked, span),
		ArrivalRate:       rate(first.arrived, last.arrived, span),
		LagGrowthRate:     lagSlope(w),
		NakRate:           rate(first.naks, last.naks, span),
		MaxDeliveriesRate: rate(first.maxDel, last.maxDel, span),
		TerminatedRate:    rate(first.term, last.term, span),

		Push:      c.Push,
		PushBound: c.PushBound,
		Paused:    c.Paused,
	}

	// Baselines learn only from rates that exist: a node's first sample
	// has none, and a zero from it would drag the baseline down.
	if span > 0 {
		if !ns.baselineSet {
			ns.baselineFrom = atNs
		}
		alpha := t.alpha(dt, time.Duration(atNs-ns.baselineFrom))
		ns.ackBaseline = ewma(ns.ackBaseline, n.AckRate, alpha, ns.baselineSet)
		ns.arrivalBaseline = ewma(ns.arrivalBaseline, n.ArrivalRate, alpha, ns.baselineSet)
		ns.baselineSet = true
	}
	n.AckRateBaseline = ns.ackBaseline
	n.ArrivalRateBaseline = ns.arrivalBaseline
	n.ArrivalRise = rise(n.ArrivalRate, ns.arrivalBaseline)

	if ss != nil {
		n.PublishRate = ss.rate
	}

	// A paused consumer waits by an operator's choice, not a fault: like
	// an idle one, it cannot have stalled before it was resumed.
	if n.MessagesWaiting == 0 || c.Paused {
		ns.idleAt = unixNs(at)
	}
	observedSince, warmUntil := fromNs(ns.observedSince), fromNs(ns.warmUntil)
	progress := progressAt(c.LastAck, fromNs(ns.ackRoseAt))
	onset := stallOnset(progress, later(observedSince, fromNs(ns.idleAt)))

	// The node's own cadence: a spell that ended in progress is judged
	// against the threshold it was silent under, then the threshold for
	// this sample follows from what has been learned.
	cfg := &t.cfg
	if progressed {
		ns.cad.endSpell(atNs, c.AckFloor, c.AckWait, cfg)
	}
	ns.cad.settle(atNs, c.AckFloor, cfg)
	learnedMax := ns.cad.decayed(atNs, cfg.CadenceHalfLife)
	learned := ns.cad.learned(cfg)
	present := c.NumWaiting > 0 || c.PushBound
	thr := stallThreshold(learnedMax, learned, present, cfg.StallAfter, cfg.Interval, c.AckWait)
	if n.MessagesWaiting > 0 && !c.Paused {
		// It holds fresh work when what it has pending is exactly its newest
		// deliveries, right above its ack floor. A message stranded by an
		// earlier crash sits below them and holds the floor back: what is
		// pending then is not (only) the work it has in hand.
		held := c.NumAckPending > 0 && satAdd(c.AckFloor, c.NumAckPending) == c.Delivered
		ns.cad.sample(atNs, nonNegSeconds(at.Sub(onset)), thr, c.Delivered, held, present)
	}

	n.ObservedSeconds = nonNegSeconds(at.Sub(observedSince))
	n.SecondsSinceLastAck = secondsSinceLastAck(at, progress, fromNs(ns.created), observedSince)
	// A node with work waiting that has made no progress since watching
	// (re)began cannot be judged until it has been watched for its stall
	// threshold: its silence began before the engine could see it, so
	// "not stalled yet" would be a guess. An incident kept across an
	// engine restart must not end on that guess.
	n.Warming = isWarming(at, warmUntil) ||
		unvouched(n.MessagesWaiting, at, progress, observedSince, thr)
	n.StallThreshold = thr
	n.CadenceLearned = learned
	if learned {
		n.AckCadence = learnedMax
	}
	if isStalled(n.MessagesWaiting, at, onset, warmUntil, thr) {
		n.Stalled = true
		n.StallOnset = onset
		n.StalledSeconds = nonNegSeconds(at.Sub(onset))
		if !ns.stalls.in {
			ns.cad.stallBegan()
		}
	}
	// A node that cannot be judged (warming after a gap, a failover or the
	// engine's own blindness) neither begins nor ends a stall: a stall seen
	// on both sides of the gap is one stall, not a flap.
	if !n.Warming {
		ns.stalls.note(n.Stalled, atNs, onset.UnixNano())
	}
	n.RecentStalls = ns.stalls.recent(atNs, cfg.FlapWindow)
	n.SecondsSinceStall = ns.stalls.sinceStall(atNs, observedSince)
	n.Idle = isIdle(n.MessagesWaiting, at, progress, thr)
	n.LagFloor = lagFloor(w, cadenceSpan(learnedMax, cfg.Interval))
	// Within that span a sample falls less than one interval after one of
	// the node's acks, when no more than an interval's arrivals wait if it
	// keeps up; half as much again covers sample jitter and a rate that
	// moved within the window.
	allowance := max(float64(t.cfg.LaggingFloor), 1.5*n.ArrivalRate*cfg.Interval.Seconds())
	wobble := n.ArrivalRate * cfg.Interval.Seconds()
	n.Lagging = isLagging(n.LagFloor, n.LagGrowthRate, recentGrowth(w), allowance, wobble, t.cfg.LaggingSlope, ns.lagging)
	ns.lagging = n.Lagging
	n.FallingBehind = n.Lagging && !n.Stalled && n.AckRate > 0

	n.SecondsToDrain = drainSeconds(n.MessagesWaiting, n.LagGrowthRate, n.AckRate, float64(n.LagFloor) < allowance)
	t.timeLag(ns, c, ss, at, n)
	n.MessagesLost = satInt(ns.loss.lost)
	n.LossRate = rate(first.lost, last.lost, span)
	n.SecondsToLoss = -1
	if ss != nil && ss.limited {
		n.RetentionLimited = true
		// What the node has not been delivered grows as its work arrives
		// and shrinks as it is delivered: for a consumer of the whole
		// stream, at the stream's publish rate. Rates, not the count's
		// own slope, which flattens once the limit caps it.
		arrival := n.ArrivalRate
		if !c.Filtered {
			arrival = ss.rate
		}
		fc.behindRate = arrival - n.DeliveryRate
		if span > 0 {
			fc.ageRate = (last.age - first.age) / span
		}
		n.SecondsToLoss = lossForecast(fc)
	}
}

// lossInputs advances the node's loss accounting with this sample, and
// gathers what the loss forecast reads of it into cur (for the window)
// and the returned forecast (rates are filled once the window is).
func (t *Tracker) lossInputs(ns *nodeState, c *ConsumerSample, ss *streamState, at time.Time, cur *counts) forecast {
	in := lossInput{pos: c.DeliveredStream, delivered: c.Delivered, pending: c.NumPending, filtered: c.Filtered}
	if ss != nil {
		in.first, in.limited = ss.first.seq, ss.limited
	}
	before := ns.loss
	ns.loss = lossStep(ns.loss, in)
	cur.lost = ns.loss.lost
	fc := forecast{pending: c.NumPending, age: -1}
	if ss == nil || !ss.limited {
		return fc
	}
	fc.limit, fc.maxAge = ss.limit, ss.maxAge
	// The next message the node has not been delivered: the one past its
	// position, or the oldest one it has not finished when that was read
	// and lies further on (a filtered consumer's next match).
	next := c.DeliveredStream + 1
	readNext := c.OldestSeq >= next && !c.OldestTime.IsZero()
	if readNext {
		next = c.OldestSeq
	}
	// Loss is under way when messages were lost since the last sample, or
	// the stream's first message is already past the node's next one.
	fc.underway = (before.set && ns.loss.lost > before.lost) ||
		(!c.Filtered && c.NumPending > 0 && in.first > next)
	fc.behind = behindCount(c.Filtered, c.NumPending, ss.msgs, next, in.first)
	if ss.maxAge > 0 {
		switch {
		case c.NumPending == 0:
			fc.age = 0 // nothing undelivered to age
		case readNext:
			fc.age = nonNegSeconds(at.Sub(c.OldestTime))
		default:
			if t0, ok := publishedAt(next, ss.first, ss.hist.pts, ss.last); ok {
				fc.age = nonNegSeconds(at.Sub(time.Unix(0, t0)))
			}
		}
		cur.age = max(fc.age, 0)
	}
	return fc
}

// timeLag fills the node's TimeLagSeconds: the age of the message just past
// its ack floor, read from the stream when the sampler did; otherwise
// estimated from when its stream published that sequence, or, with no
// stream to ask, from how long its waiting work takes to arrive.
func (t *Tracker) timeLag(ns *nodeState, c *ConsumerSample, ss *streamState, at time.Time, n *Node) {
	if n.MessagesWaiting == 0 {
		return
	}
	if !c.OldestTime.IsZero() {
		n.TimeLagSeconds = nonNegSeconds(at.Sub(c.OldestTime))
		return
	}
	n.TimeLagEstimated = true
	if ss != nil {
		if t0, ok := publishedAt(max(c.AckFloorStream+1, ss.first.seq), ss.first, ss.hist.pts, ss.last); ok {
			n.TimeLagSeconds = nonNegSeconds(at.Sub(time.Unix(0, t0)))
			return
		}
	}
	// A paused node's idle mark is set while work waits: no bound then.
	idleAt := fromNs(ns.idleAt)
	if c.Paused {
		idleAt = time.Time{}
	}
	n.TimeLagSeconds = lagFromRates(n.MessagesWaiting, n.ArrivalRate, at, idleAt, fromNs(ns.observedSince))
}

// judged reports whether a node's state can be judged: it is neither idle
// (nothing to show) nor warming (not watched long enough) nor paused (by an
// operator's choice). Group and system fractions count only judged nodes,
// so quiet members never dilute a pattern nor block one.
func judged(n *Node) bool { return !n.Idle && !n.Warming && !n.Paused }

// alpha is ewmaAlpha with the half-life in force for a baseline that has
// learned for age, remembering the last result: every node of a tick
// usually has the same dt and, once past its youth, the same half-life.
func (t *Tracker) alpha(dt, age time.Duration) float64 {
	hl := baselineHalfLife(age, t.cfg.BaselineHalfLife)
	if dt != t.alphaDt || hl != t.alphaHL {
		t.alphaDt, t.alphaHL, t.alphaVal = dt, hl, ewmaAlpha(dt, hl)
	}
	return t.alphaVal
}

// streamOf returns the state of the node's stream, or nil if unknown.
func (t *Tracker) streamOf(ns *nodeState) *streamState {
	if ns.stream == nil || ns.stream.gone {
		ns.stream = t.streams[ns.key.Stream]
	}
	return ns.stream
}

// addToGroup adds n to its group's accumulator. Slots persist across
// updates and each node caches its own, so a steady node finds its group
// without hashing: a slot holds one name, so a cached slot holding the
// node's group name is its group's.
func (t *Tracker) addToGroup(ns *nodeState, n *Node) {
	name := n.Group
	if ns.slot >= len(t.groups) || t.groups[ns.slot].name != name {
		slot, ok := t.groupSlot[name]
		if !ok {
			if l := len(t.freeSlots); l > 0 {
				slot = t.freeSlots[l-1]
				t.freeSlots = t.freeSlots[:l-1]
			} else {
				slot = len(t.groups)
				t.groups = append(t.groups, groupAcc{})
			}
			t.groups[slot] = groupAcc{name: name}
			t.groupSlot[name] = slot
		}
		ns.slot = slot
	}
	acc := &t.groups[ns.slot]
	if acc.tick != t.tick {
		acc.tick = t.tick
		acc.reset()
		t.active = append(t.active, ns.slot)
	}
	acc.add(n)
}

// sweep classifies every tracked node that was not observed in this update:
// unobserved (listed, or on an unreadable stream) or left.
func (t *Tracker) sweep(s *Snapshot, st *State) {
	for _, key := range s.Unobserved {
		ns := t.nodes[key]
		if ns == nil || ns.seen == t.tick || ns.unobserved == t.tick {
			continue // never seen (ignored), observed after all, or listed twice
		}
		ns.unobserved = t.tick
		ns.restart = true
		st.Unobserved = append(st.Unobserved, key)
	}
	for i := 0; i < len(t.all); {
		ns := t.all[i]
		if ns.seen == t.tick || ns.unobserved == t.tick {
			i++
			continue
		}
		if _, ok := t.unobservedStreams[ns.key.Stream]; ok {
			ns.unobserved = t.tick
			ns.restart = true
			st.Unobserved = append(st.Unobserved, ns.key)
			i++
			continue
		}
		st.Left = append(st.Left, ns.key)
		ns.gone = true
		delete(t.nodes, ns.key)
		last := len(t.all) - 1
		t.all[i] = t.all[last]
		t.all[last] = nil
		t.all = t.all[:last]
	}
	slices.SortFunc(st.Unobserved, compareKeys)
	slices.SortFunc(st.Left, compareKeys)
}

// summarise fills the groups and the system from the nodes.
func (t *Tracker) summarise(st *State, pubRate float64, nStreams int) {
	t.rises = summariseSystem(st, pubRate, nStreams, t.rises)
	if len(t.active) > 0 {
		st.Groups = make([]Group, 0, len(t.active))
	}
	for _, slot := range t.active {
		st.Groups = append(st.Groups, t.groups[slot].finish(&st.System))
	}
	slices.SortFunc(st.Groups, func(a, b Group) int { return cmp.Compare(a.Name, b.Name) })
	st.System.Groups = len(st.Groups)

	// Free the slots of groups that had no observed node, so group names
	// that come and go do not pile up.
	for slot := range t.groups {
		acc := &t.groups[slot]
		if acc.name == "" || acc.tick == t.tick {
			continue
		}
		delete(t.groupSlot, acc.name)
		*acc = groupAcc{}
		t.freeSlots = append(t.freeSlots, slot)
	}
}
