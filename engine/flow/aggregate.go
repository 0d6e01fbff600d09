package flow

import (
	"cmp"
	"slices"
	"time"
)

// Groups and the system are sums, counts and fractions over nodes, so they
// can be computed by whoever holds all the nodes: the Tracker over the
// nodes it tracked itself, or an Aggregator over nodes several engines
// tracked, each its share of the streams. Both use what follows, so the
// two agree to the bit.

func (acc *groupAcc) reset() {
	acc.g = Group{Name: acc.name}
	acc.first, acc.last = time.Time{}, time.Time{}
}

// add counts n in its group.
func (acc *groupAcc) add(n *Node) {
	g := &acc.g
	g.Size++
	g.MessagesWaiting += n.MessagesWaiting
	g.AckRate += n.AckRate
	g.ArrivalRate += n.ArrivalRate
	if n.Idle {
		g.Idle++
	}
	if !judged(n) {
		return
	}
	g.Judged++
	if n.Lagging {
		g.Lagging++
	}
	if n.FallingBehind {
		g.FallingBehind++
	}
	if n.Stalled {
		if g.Stalled == 0 || n.StallOnset.Before(acc.first) {
			acc.first = n.StallOnset
		}
		if g.Stalled == 0 || n.StallOnset.After(acc.last) {
			acc.last = n.StallOnset
		}
		g.Stalled++
	}
}

// finish returns the group with its fractions and what lies outside it in
// sys, which must be summed already.
func (acc *groupAcc) finish(sys *System) Group {
	g := acc.g
	g.StalledFraction = fraction(g.Stalled, g.Judged)
	g.LaggingFraction = fraction(g.Lagging, g.Judged)
	if g.Stalled >= 2 {
		g.StallSpread = acc.last.Sub(acc.first).Seconds()
	}
	g.OutsideNodes = sys.Nodes - g.Size
	g.OutsideJudged = sys.JudgedNodes - g.Judged
	g.OutsideFlowing = g.OutsideJudged - (sys.StalledNodes - g.Stalled)
	g.OutsideStalledFraction = fraction(sys.StalledNodes-g.Stalled, g.OutsideJudged)
	return g
}

// summariseSystem fills st.System from st.Nodes (groups aside); rises is
// scratch, returned emptied for reuse.
func summariseSystem(st *State, pubRate float64, nStreams int, rises []float64) []float64 {
	sys := &st.System
	sys.Nodes = len(st.Nodes)
	sys.PublishRate = pubRate
	sys.Streams = nStreams
	for i := range st.Nodes {
		n := &st.Nodes[i]
		sys.MessagesWaiting += n.MessagesWaiting
		sys.AckRate += n.AckRate
		sys.ArrivalRate += n.ArrivalRate
		if n.Idle {
			sys.IdleNodes++
		}
		if !judged(n) {
			continue
		}
		sys.JudgedNodes++
		rises = append(rises, n.ArrivalRise)
		if n.Lagging {
			sys.LaggingNodes++
		}
		if n.FallingBehind {
			sys.FallingBehindNodes++
		}
		if n.Stalled {
			sys.StalledNodes++
		}
	}
	sys.LaggingFraction = fraction(sys.LaggingNodes, sys.JudgedNodes)
	sys.StalledFraction = fraction(sys.StalledNodes, sys.JudgedNodes)
	// Over the judged nodes still consuming: one that died during an
	// overload is its own incident, and must not dilute the overload.
	sys.FallingBehindFraction = fraction(sys.FallingBehindNodes, sys.JudgedNodes-sys.StalledNodes)
	sys.ArrivalRise = median(rises)
	return rises[:0]
}

// sysBaselines are the system's slow baselines of its publish and arrival
// rates, which learn together: from the first update with a rate, while
// most nodes keep up.
type sysBaselines struct {
	pub, arr float64
	set      bool
	from     time.Time
	prev     time.Time
}

// update learns from the system of one update at time at, and writes the
// baselines into sys.
func (b *sysBaselines) update(at time.Time, pubRate float64, anyRate bool, sys *System, halfLife time.Duration) {
	if anyRate && sys.LaggingFraction < overloadFreeze {
		dt := at.Sub(b.prev)
		if b.prev.IsZero() {
			dt = 0
		}
		if !b.set {
			b.from = at
		}
		alpha := ewmaAlpha(dt, baselineHalfLife(at.Sub(b.from), halfLife))
		b.pub = ewma(b.pub, pubRate, alpha, b.set)
		b.arr = ewma(b.arr, sys.ArrivalRate, alpha, b.set)
		b.set = true
	}
	b.prev = at
	sys.PublishRateBaseline = b.pub
	sys.ArrivalRateBaseline = b.arr
}

// Aggregator computes the groups and the system over nodes whose metrics
// were computed elsewhere: by several engines, each tracking its share of
// the streams with a Tracker of its own. It keeps the system's baselines
// across updates, as a Tracker does. Not safe for concurrent use.
type Aggregator struct {
	halfLife time.Duration
	base     sysBaselines
	groups   map[string]*groupAcc
	rises    []float64
}

// NewAggregator returns an Aggregator with cfg's baseline half-life; zero
// fields take the defaults.
func NewAggregator(cfg Config) *Aggregator {
	return &Aggregator{halfLife: cfg.withDefaults().BaselineHalfLife, groups: map[string]*groupAcc{}}
}

// Combine fills st.Groups and st.System from st.Nodes, which must be sorted
// by key, as the Tracker would have from the same nodes. pubRate, anyRate
// and streams are the streams' totals, summed over the shares
// (Tracker.StreamTotals).
func (a *Aggregator) Combine(st *State, pubRate float64, anyRate bool, streams int) {
	st.System = System{}
	a.rises = summariseSystem(st, pubRate, streams, a.rises)
	for _, acc := range a.groups {
		acc.tick = 0
	}
	active := 0
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Group == "" {
			continue
		}
		acc := a.groups[n.Group]
		if acc == nil {
			acc = &groupAcc{name: n.Group}
			a.groups[n.Group] = acc
		}
		if acc.tick == 0 {
			acc.tick = 1
			acc.reset()
			active++
		}
		acc.add(n)
	}
	st.Groups = nil
	if active > 0 {
		st.Groups = make([]Group, 0, active)
	}
	for name, acc := range a.groups {
		if acc.tick == 0 {
			delete(a.groups, name) // no node this update: names that come and go do not pile up
			continue
		}
		st.Groups = append(st.Groups, acc.finish(&st.System))
	}
	slices.SortFunc(st.Groups, func(a, b Group) int { return cmp.Compare(a.Name, b.Name) })
	st.System.Groups = len(st.Groups)
	a.base.update(st.At, pubRate, anyRate, &st.System, a.halfLife)
}
