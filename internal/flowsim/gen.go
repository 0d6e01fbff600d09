package flowsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind is the class of a generated scenario: what a detector should report.
type Kind string

// Scenario classes.
const (
	KindHealthy     Kind = "healthy"
	KindNodeFailure Kind = "node-failure"
	KindPartition   Kind = "partition"
	KindBottleneck  Kind = "bottleneck"
	KindOverload    Kind = "overload"
	KindNested      Kind = "overload+node-failure"
	KindFlapping    Kind = "flapping"
)

// Span is a stretch of time since the start; To 0 means to the end.
type Span struct{ From, To time.Duration }

// Outcome is what a detector should make of a Faulty scenario.
type Outcome struct {
	Kind Kind
	// Nodes: node-failure, bottleneck, flapping: the faulty node;
	// partition: every node of the cut group, idle members included;
	// overload+node-failure: the node that crashed during the overload.
	Nodes []string
	// At is the onset: the crash, the cut, the slowdown (its lag climbs
	// from then), or for overload the time by which publishing had passed
	// the capacity of most nodes (for a spike, the spike itself).
	At time.Duration
	// Overload: when publishing began to rise, whether it ramps, and the
	// nodes it pushes past their capacity.
	LoadAt      time.Duration
	Ramp        bool
	Overwhelmed []string
	CrashAt     time.Duration // overload+node-failure: the crash
	Crashes     []Span        // flapping: each spell down
	// Background lists the nodes that stay healthy throughout: a detector
	// must say nothing of them.
	Background []string
}

// Healthy returns a random scenario in which every node keeps up with its
// work: 2–4 groups of 2–6 nodes, each steady, a bursty producer's, a
// trickle's, a batch producer's, a batch acker (by time, every 1–8s, or by
// count), a periodic pauser (≤ 3s every ≥ 10s), or idle; some created late
// or deleted mid-run; some streams growing slowly within capacity.
func Healthy(rng *rand.Rand) Scenario {
	b := newBuilder(rng, false)
	b.background(2+rng.IntN(3), 2, 6)
	b.sc.Duration = 180 * time.Second
	b.sc.Name = "healthy: " + b.summary()
	return b.finish()
}

// Faulty returns a random scenario with one fault amid healthy background
// traffic, and the outcome a detector should report: node-failure,
// partition, bottleneck, overload (spike or ramp), a node failure during an
// overload, or flapping.
func Faulty(rng *rand.Rand) (Scenario, Outcome) {
	kinds := []Kind{KindNodeFailure, KindPartition, KindBottleneck, KindOverload, KindNested, KindFlapping}
	return FaultyOf(rng, kinds[rng.IntN(len(kinds))])
}

// FaultyOf is Faulty restricted to one kind.
func FaultyOf(rng *rand.Rand, k Kind) (Scenario, Outcome) {
	switch k {
	case KindNodeFailure:
		return nodeFailure(rng)
	case KindPartition:
		return partition(rng)
	case KindBottleneck:
		return bottleneck(rng)
	case KindFlapping:
		return flapping(rng)
	case KindOverload, KindNested:
		return overload(rng, k == KindNested)
	}
	panic("flowsim: no faulty scenario of kind " + string(k))
}

// Shapes of healthy nodes.
const (
	shapeSteady   = "steady"
	shapeBursty   = "bursty"
	shapeTrickle  = "trickle"
	shapeBatchPub = "batch-producer"
	shapeAckEvery = "ack-every"
	shapeAckCount = "ack-count"
	shapePauser   = "pauser"
	shapeIdle     = "idle"
)

// builder assembles a scenario.
type builder struct {
	rng      *rand.Rand
	sc       Scenario
	overload bool // nodes are sized to be overwhelmed by a load of factor
	factor   float64
	groups   []string
	members  map[string][]string
	growth   map[string]float64 // stream -> peak multiplier of its healthy growth
	nStream  map[PublishKind]int
}

func newBuilder(rng *rand.Rand, overload bool) *builder {
	b := &builder{
		rng:      rng,
		overload: overload,
		members:  map[string][]string{},
		growth:   map[string]float64{},
		nStream:  map[PublishKind]int{},
	}
	b.sc.Seed = rng.Uint64()
	names := []string{"eu", "us", "ap", "sa", "af", "me"}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	b.groups = names
	return b
}

func (b *builder) uniform(lo, hi float64) float64 { return lo + (hi-lo)*b.rng.Float64() }

func (b *builder) logUniform(lo, hi float64) float64 {
	return math.Exp(b.uniform(math.Log(lo), math.Log(hi)))
}

func (b *builder) seconds(lo, hi float64) time.Duration {
	return time.Duration(b.uniform(lo, hi) * float64(time.Second)).Round(10 * time.Millisecond)
}

func (b *builder) chance(p float64) bool { return b.rng.Float64() < p }

// background adds n groups of lo..hi healthy nodes each.
func (b *builder) background(n, lo, hi int) {
	for range n {
		g := b.group()
		for range lo + b.rng.IntN(hi-lo+1) {
			b.healthyNode(g, "")
		}
	}
}

// group takes the next unused group name.
func (b *builder) group() string {
	g := b.groups[len(b.members)]
	b.members[g] = nil
	return g
}

// stream returns a stream of kind, an existing one with some chance (its
// consumers then share its traffic) or a new one with random parameters.
func (b *builder) stream(kind PublishKind, shareP float64) *Stream {
	var same []int
	for i := range b.sc.Streams {
		if b.sc.Streams[i].Publish.Kind == kind {
			same = append(same, i)
		}
	}
	if len(same) > 0 && b.chance(shareP) {
		return &b.sc.Streams[same[b.rng.IntN(len(same))]]
	}
	b.nStream[kind]++
	s := Stream{Name: fmt.Sprintf("%s%d", kind, b.nStream[kind]), InitialSeq: uint64(b.rng.IntN(200000))}
	p := Publish{Kind: kind}
	switch kind {
	case Steady:
		p.Rate = b.logUniform(2, 150)
	case Bursty:
		p.Rate = b.logUniform(2, 40)
		p.BurstRate = p.Rate * b.uniform(3, 8)
		p.BurstLen = b.seconds(1, 3)
		p.BurstEvery = b.seconds(15, 40)
		if b.overload {
			// Milder bursts, so a capacity that absorbs them is still
			// overwhelmed by the overload.
			p.BurstRate = p.Rate * b.uniform(1.5, 3)
			p.BurstLen = b.seconds(1, 2)
		}
	case Trickle:
		p.Gap = b.seconds(4, 20)
	case Batches:
		p.Batch = 20 + b.rng.IntN(280)
		p.Every = b.seconds(3, 10)
	}
	s.Publish = p
	b.growth[s.Name] = 1
	if !b.overload && (kind == Steady || kind == Bursty) && b.chance(0.3) {
		// Slow growth that stays within every consumer's capacity: the
		// capacities below are sized on the grown rate.
		f := b.uniform(1.2, 1.5)
		b.growth[s.Name] = f
		b.sc.Faults = append(b.sc.Faults, Fault{At: b.seconds(20, 60), Kind: Load, Stream: s.Name, Factor: f, Rise: b.seconds(60, 120)})
	}
	b.sc.Streams = append(b.sc.Streams, s)
	return &b.sc.Streams[len(b.sc.Streams)-1]
}

// nodeID names the next node of group g.
func (b *builder) nodeID(g string) string {
	id := fmt.Sprintf("%s-%d", g, len(b.members[g])+1)
	b.members[g] = append(b.members[g], id)
	return id
}

// headroom is how far above its peak arrivals a node's capacity is.
func (b *builder) headroom() float64 {
	if b.overload {
		return b.uniform(1.4, min(2.4, b.factor/1.3))
	}
	return b.uniform(1.5, 4)
}

// healthyNode adds a node of shape (random if "") to group g, with a
// capacity that keeps up with its stream at its peak.
func (b *builder) healthyNode(g, shape string) *Consumer {
	if shape == "" {
		shapes := []string{shapeSteady, shapeBursty, shapeTrickle, shapeBatchPub, shapeAckEvery, shapeAckCount, shapePauser, shapeIdle}
		if b.overload {
			shapes = []string{shapeSteady, shapeSteady, shapeBursty, shapeAckEvery, shapeAckCount, shapePauser}
		}
		shape = shapes[b.rng.IntN(len(shapes))]
	}
	c := Consumer{ID: b.nodeID(g), Group: g, Shape: shape}
	unlimited := !b.overload && b.chance(0.25)
	var st *Stream
	switch shape {
	case shapeSteady, shapeAckEvery, shapeAckCount:
		st = b.stream(Steady, 0.4)
	case shapePauser:
		if b.chance(0.7) {
			st = b.stream(Steady, 0.4)
		} else {
			st = b.stream(Bursty, 0.4)
		}
	case shapeBursty:
		st = b.stream(Bursty, 0.4)
	case shapeTrickle:
		st = b.stream(Trickle, 0.4)
	case shapeBatchPub:
		st = b.stream(Batches, 0.4)
	case shapeIdle:
		st = b.stream(Silent, 0.6)
	}
	c.Stream = st.Name
	p := st.Publish
	peak := p.MeanRate() * b.growth[st.Name]
	capacity := b.headroom() * peak
	switch shape {
	case shapeAckEvery:
		every := b.uniform(1, 8)
		if b.overload {
			every = b.uniform(1, 4)
		}
		// Hold at most half of MaxAckPending between acks.
		every = min(every, 500/peak)
		c.Ack = Ack{Kind: AckInterval, Every: time.Duration(every * float64(time.Second)).Round(10 * time.Millisecond)}
		c.Shape = fmt.Sprintf("%s(%.1fs)", shape, every)
	case shapeAckCount:
		// A count reached within 0.5–4s of arrivals, and at most half of
		// MaxAckPending: the acker never waits long nor blocks.
		hold := b.uniform(0.5, 4)
		if b.overload {
			hold = b.uniform(0.5, 2)
		}
		n := min(max(int(p.MeanRate()*hold), 2), 400)
		c.Ack = Ack{Kind: AckCount, Count: n}
		c.Shape = fmt.Sprintf("%s(%d)", shape, n)
	case shapePauser:
		c.Pause = Pause{For: b.seconds(0.3, 3), Every: b.seconds(10, 40)}
		if b.overload {
			c.Pause.For = b.seconds(0.3, 2)
		}
		// The backlog of a pause drains within about 4s.
		capacity = max(capacity, 1.3*peak*(1+c.Pause.For.Seconds()/4))
		c.Shape = fmt.Sprintf("%s(%v/%v)", shape, c.Pause.For, c.Pause.Every)
	case shapeTrickle:
		capacity = max(capacity, b.uniform(5, 20))
	case shapeBatchPub:
		// A batch is done within 1–3s.
		capacity = max(capacity, float64(p.Batch)*b.growth[st.Name]/b.uniform(1, 3))
	case shapeIdle:
		capacity = b.uniform(5, 100)
	}
	if p.Kind == Bursty {
		// A burst is absorbed within about 4s of its end: capacity covers
		// the base rate plus the burst spread over its length and 4s.
		l := p.BurstLen.Seconds()
		g := b.growth[st.Name]
		capacity = max(capacity, 1.2*g*(p.Rate+p.BurstRate*l/(l+4)))
	}
	if unlimited {
		capacity = 0
	}
	c.Capacity = capacity
	if !b.overload && shape != shapeIdle {
		switch r := b.rng.Float64(); {
		case r < 0.08:
			c.CreatedAt = b.seconds(20, 100)
		case r < 0.16:
			c.DeletedAt = b.seconds(40, 150)
		}
	}
	b.sc.Consumers = append(b.sc.Consumers, c)
	return &b.sc.Consumers[len(b.sc.Consumers)-1]
}

// busyNode adds a node to g that works continuously and acks each
// message: a steady stream of 5–150 msgs/s, capacity h times its rate.
// Faults are put on busy nodes so that detection bounds need no knowledge
// of a node's cadence.
func (b *builder) busyNode(g string, lo, hi float64) *Consumer {
	st := b.stream(Steady, 0.3)
	if st.Publish.Rate < 5 || b.growth[st.Name] != 1 {
		b.nStream[Steady]++
		s := Stream{Name: fmt.Sprintf("%s%d", Steady, b.nStream[Steady]), InitialSeq: uint64(b.rng.IntN(200000)),
			Publish: Publish{Kind: Steady, Rate: b.logUniform(5, 150)}}
		b.growth[s.Name] = 1
		b.sc.Streams = append(b.sc.Streams, s)
		st = &b.sc.Streams[len(b.sc.Streams)-1]
	}
	c := Consumer{ID: b.nodeID(g), Group: g, Stream: st.Name, Shape: "busy",
		Capacity: b.uniform(lo, hi) * st.Publish.Rate}
	b.sc.Consumers = append(b.sc.Consumers, c)
	return &b.sc.Consumers[len(b.sc.Consumers)-1]
}

// consumer returns the node with id.
func (b *builder) consumer(id string) *Consumer {
	for i := range b.sc.Consumers {
		if b.sc.Consumers[i].ID == id {
			return &b.sc.Consumers[i]
		}
	}
	return nil
}

// stable reports whether node id exists for the whole run.
func (b *builder) stable(id string) bool {
	c := b.consumer(id)
	return c.CreatedAt == 0 && c.DeletedAt == 0
}

// continuous reports whether node id has work arriving all the time, so
// that it is never idle for long: a stable node on a steady or bursty stream.
func (b *builder) continuous(id string) bool {
	c := b.consumer(id)
	k := b.streamOf(c).Publish.Kind
	return b.stable(id) && (k == Steady || k == Bursty) && b.streamOf(c).Publish.MeanRate() >= 1
}

func (b *builder) streamOf(c *Consumer) *Stream {
	for i := range b.sc.Streams {
		if b.sc.Streams[i].Name == c.Stream {
			return &b.sc.Streams[i]
		}
	}
	return nil
}

// others returns every node outside group g.
func (b *builder) others(g string) []string {
	var out []string
	for _, c := range b.sc.Consumers {
		if c.Group != g {
			out = append(out, c.ID)
		}
	}
	return out
}

// summary describes the nodes: groups, count, and shapes.
func (b *builder) summary() string {
	count := map[string]int{}
	for _, c := range b.sc.Consumers {
		s, _, _ := strings.Cut(c.Shape, "(")
		if c.CreatedAt > 0 {
			count["late"]++
		}
		if c.DeletedAt > 0 {
			count["deleted"]++
		}
		count[s]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, count[k])
	}
	return fmt.Sprintf("%d groups, %d nodes, %d streams (%s)", len(b.members), len(b.sc.Consumers), len(b.sc.Streams), strings.Join(parts, " "))
}

func (b *builder) finish() Scenario {
	slices.SortStableFunc(b.sc.Faults, func(x, y Fault) int { return int(x.At - y.At) })
	return b.sc
}

func (b *builder) outcome(k Kind, nodes ...string) Outcome {
	o := Outcome{Kind: k, Nodes: nodes}
	for _, c := range b.sc.Consumers {
		if !slices.Contains(nodes, c.ID) {
			o.Background = append(o.Background, c.ID)
		}
	}
	return o
}

// nodeFailure: one busy node crashes for good while its stream keeps
// publishing; its group keeps at least one other busy node.
func nodeFailure(rng *rand.Rand) (Scenario, Outcome) {
	b := newBuilder(rng, false)
	b.background(2+rng.IntN(3), 1, 5)
	g := b.groups[rng.IntN(len(b.members))]
	victim := b.busyNode(g, 1.5, 3).ID
	if !slices.ContainsFunc(b.members[g], func(id string) bool { return id != victim && b.continuous(id) }) {
		b.busyNode(g, 1.5, 4)
	}
	at := b.seconds(40, 70)
	b.sc.Faults = append(b.sc.Faults, Fault{At: at, Kind: Crash, Node: victim})
	b.sc.Duration = at + 45*time.Second
	b.sc.Name = fmt.Sprintf("node-failure of %s at %v: %s", victim, at, b.summary())
	o := b.outcome(KindNodeFailure, victim)
	o.At = at
	return b.finish(), o
}

// partition: every node of one group crashes at the same moment. The group
// has 2–5 busy nodes and may have idle members; the other groups have more
// nodes that work continuously than the cut group has.
func partition(rng *rand.Rand) (Scenario, Outcome) {
	b := newBuilder(rng, false)
	g := b.group()
	for range 2 + rng.IntN(4) {
		b.busyNode(g, 1.5, 4)
	}
	for range rng.IntN(3) {
		b.healthyNode(g, shapeIdle)
	}
	b.background(1+rng.IntN(3), 2, 6)
	flowing := len(slices.DeleteFunc(b.others(g), func(id string) bool { return !b.continuous(id) }))
	for extra := b.groups[len(b.members)-1]; flowing <= len(b.members[g]); flowing++ {
		b.busyNode(extra, 1.5, 4)
	}
	at := b.seconds(40, 70)
	b.sc.Faults = append(b.sc.Faults, Fault{At: at, Kind: CutGroup, Group: g})
	b.sc.Duration = at + 40*time.Second
	b.sc.Name = fmt.Sprintf("partition of %s (%d nodes) at %v: %s", g, len(b.members[g]), at, b.summary())
	o := b.outcome(KindPartition, b.members[g]...)
	o.At = at
	return b.finish(), o
}

// bottleneck: one busy node's capacity falls to 30–70% of its arrivals.
func bottleneck(rng *rand.Rand) (Scenario, Outcome) {
	b := newBuilder(rng, false)
	b.background(2+rng.IntN(3), 1, 5)
	g := b.groups[rng.IntN(len(b.members))]
	victim := b.busyNode(g, 1.5, 3).ID
	at := b.seconds(40, 70)
	frac := b.uniform(0.3, 0.7)
	b.sc.Faults = append(b.sc.Faults, Fault{At: at, Kind: Slow, Node: victim, Fraction: frac})
	b.sc.Duration = at + 60*time.Second
	b.sc.Name = fmt.Sprintf("bottleneck of %s at %v (%.0f%%): %s", victim, at, 100*frac, b.summary())
	o := b.outcome(KindBottleneck, victim)
	o.At = at
	return b.finish(), o
}

// flapping: one busy node crashes for 6–10s and comes back for 4–12s, 3–6
// times.
func flapping(rng *rand.Rand) (Scenario, Outcome) {
	b := newBuilder(rng, false)
	b.background(2+rng.IntN(3), 1, 5)
	g := b.groups[rng.IntN(len(b.members))]
	victim := b.busyNode(g, 2, 4).ID
	if !slices.ContainsFunc(b.members[g], func(id string) bool { return id != victim && b.continuous(id) }) {
		b.busyNode(g, 1.5, 4)
	}
	o := b.outcome(KindFlapping, victim)
	t := b.seconds(40, 60)
	o.At = t
	for range 3 + rng.IntN(4) {
		down := b.seconds(6, 10)
		b.sc.Faults = append(b.sc.Faults, Fault{At: t, Kind: Crash, Node: victim}, Fault{At: t + down, Kind: Restart, Node: victim})
		o.Crashes = append(o.Crashes, Span{From: t, To: t + down})
		t += down + b.seconds(4, 12)
	}
	b.sc.Duration = t + 30*time.Second
	b.sc.Name = fmt.Sprintf("flapping of %s ×%d from %v: %s", victim, len(o.Crashes), o.At, b.summary())
	return b.finish(), o
}

// overload: publishing on every stream rises by 3–5×, at once or over
// 60–120s, past the capacity of more than half the nodes; nested
// adds the crash of one busy overwhelmed node 20–30s into it.
func overload(rng *rand.Rand, nested bool) (Scenario, Outcome) {
	b := newBuilder(rng, true)
	b.factor = b.uniform(3, 5)
	nGroups := 2 + rng.IntN(3)
	for range nGroups {
		g := b.group()
		for range 2 + rng.IntN(4) {
			b.healthyNode(g, "")
		}
	}
	// At most one node the overload cannot reach: idle, or absorbing it.
	switch rng.IntN(3) {
	case 0:
		b.healthyNode(b.groups[rng.IntN(nGroups)], shapeIdle)
	case 1:
		c := b.healthyNode(b.groups[rng.IntN(nGroups)], shapeTrickle)
		c.Capacity = 0
	}
	var victim string
	if nested {
		victim = b.busyNode(b.groups[rng.IntN(nGroups)], 1.4, min(2.4, b.factor/1.3)).ID
	}
	ramp := rng.IntN(2) == 0
	load := Fault{Kind: Load, Factor: b.factor}
	if ramp {
		load.At, load.Rise = b.seconds(40, 60), b.seconds(60, 120)
	} else {
		load.At = b.seconds(50, 80)
		if !nested && b.chance(0.5) {
			load.Hold = b.seconds(40, 60)
		}
	}
	b.sc.Faults = append(b.sc.Faults, load)

	// When each node's arrivals pass its capacity.
	var cross []time.Duration
	o := Outcome{Kind: KindOverload, LoadAt: load.At, Ramp: ramp}
	for _, c := range b.sc.Consumers {
		mean := b.streamOf(&c).Publish.MeanRate()
		if c.Capacity <= 0 || mean <= 0 || mean*b.factor <= c.Capacity*1.1 {
			continue
		}
		o.Overwhelmed = append(o.Overwhelmed, c.ID)
		h := c.Capacity / mean
		t := load.At
		if ramp && h > 1 {
			t += time.Duration(float64(load.Rise) * (h - 1) / (b.factor - 1))
		}
		cross = append(cross, t)
	}
	slices.Sort(cross)
	// Most nodes: more than half of every node.
	most := len(b.sc.Consumers)/2 + 1
	if len(cross) < most {
		// Cannot happen with the sizes above; fail loudly rather than
		// hand a test a scenario that is not an overload.
		panic(fmt.Sprintf("flowsim: overload scenario overwhelms %d of %d nodes", len(cross), len(b.sc.Consumers)))
	}
	o.At = cross[most-1]
	b.sc.Duration = o.At + 70*time.Second
	shape := "spike"
	if ramp {
		shape = "ramp"
	}
	if nested {
		o.Kind = KindNested
		o.CrashAt = o.At + b.seconds(20, 30)
		o.Nodes = []string{victim}
		b.sc.Faults = append(b.sc.Faults, Fault{At: o.CrashAt, Kind: Crash, Node: victim})
		b.sc.Duration = o.CrashAt + 40*time.Second
		b.sc.Name = fmt.Sprintf("overload %s ×%.1f from %v, past capacity at %v, crash of %s at %v: %s",
			shape, b.factor, load.At, o.At, victim, o.CrashAt, b.summary())
	} else {
		b.sc.Name = fmt.Sprintf("overload %s ×%.1f from %v, past capacity at %v: %s", shape, b.factor, load.At, o.At, b.summary())
	}
	for _, c := range b.sc.Consumers {
		if c.ID != victim {
			o.Background = append(o.Background, c.ID)
		}
	}
	return b.finish(), o
}
