package rulesets_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/internal/flowsim"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
)

// The property tests run random traffic shapes from internal/flowsim
// through the tracker and the built-in ruleset, tick by tick as the engine
// does, and check that what is emitted is what the README's table and
// docs/rules.md promise. Each seed gives one healthy and one faulty
// scenario.
//
// Reproduce one seed:  go test ./rulesets -run Property -seed=N
// (or HAPPEN_PROPERTY_SEED=N). HAPPEN_PROPERTY_BASE fixes the base the
// seeds derive from (printed by every run), HAPPEN_PROPERTY_SEEDS how many.
var seedFlag = flag.Uint64("seed", 0, "property tests: run only this seed (its healthy and its faulty scenario)")

// propertySeeds is how many seeds a run draws (two scenarios each): about
// 14s under -race on two cores.
const propertySeeds = 60

// Detection bounds, from the onset the scenario reports (Outcome.At):
// short enough that an operator would call it detection, long enough for
// stall thresholds that learn a node's cadence.
const (
	boundNodeFailure = 5 * time.Second  // from the crash
	boundPartition   = 6 * time.Second  // from the cut
	boundBottleneck  = 30 * time.Second // from the slowdown: lag climbs from then
	// boundBottleneckUnderLoad applies when most nodes' work rose by the
	// built-in rules' loadRise meanwhile: the rules then defer a node that
	// falls behind to the overload rule, and report it as a bottleneck
	// once the baselines (60s half-life) have caught up with the new load.
	boundBottleneckUnderLoad = 75 * time.Second
	boundSpike               = 15 * time.Second // from the spike
	boundRamp                = 40 * time.Second // from publishing passing the capacity of most nodes
	boundFlapCrash           = 5 * time.Second  // each crash of a flapping node is covered within this
)

// regressions once failed; their seeds always run. Each names the scenario
// that failed, as the generator made it then: a generator that changed
// its draws would silently turn the seed into another scenario, so the
// test fails loudly instead, and the case must be found again.
var regressions = []struct {
	seed uint64
	name string // the failing scenario's name (healthy ones start "healthy:")
	why  string
}{
	{17881250576836681993, "healthy: 3 groups, 12 nodes, 6 streams (ack-every×1 bursty×1 idle×3 pauser×6 steady×1)",
		"a 2.5s pause, its first, reported as node-failure"},
	{14504695066876361869, "healthy: 3 groups, 11 nodes, 6 streams (ack-count×3 ack-every×2 bursty×1 idle×1 late×2 pauser×1 steady×1 trickle×2)",
		"a 1.9s batch acker on a growing stream, sampled at 1s, reported as bottleneck"},
	{301899939137605568, "healthy: 4 groups, 17 nodes, 10 streams (ack-count×3 ack-every×1 batch-producer×1 bursty×1 deleted×1 idle×3 late×4 pauser×2 steady×4 trickle×2)",
		"a count acker (143 at 72/s) reported as bottleneck"},
	{17132471120695185453, "flapping of af-6 ×3 from 49.93s: 3 groups, 10 nodes, 11 streams (ack-count×2 batch-producer×4 bursty×1 busy×1 late×1 pauser×1 steady×1)",
		"the first crash learned as the node's cadence; later crashes unseen"},
	{5792563050999226040, "bottleneck of ap-2 at 57s (63%): 2 groups, 5 nodes, 5 streams (bursty×2 busy×1 deleted×1 idle×1 late×1 trickle×1)",
		"a bottleneck in a small system reported as overload"},
	{17523766635563988348, "overload ramp ×3.7 from 45.2s, past capacity at 1m13.167152774s: 3 groups, 14 nodes, 9 streams (ack-count×2 ack-every×1 bursty×4 idle×1 pauser×1 steady×5)",
		"on a ramp, the first nodes past capacity reported as bottlenecks"},
	{15448709192973908929, "overload spike ×3.3 from 50.33s, past capacity at 50.33s, crash of eu-3 at 1m11.48s: 4 groups, 14 nodes, 11 streams (ack-count×2 ack-every×2 bursty×1 busy×1 pauser×2 steady×6)",
		"a single crash during the overload reported as flapping"},
	{15170566308388193770, "flapping of sa-4 ×4 from 48.09s: 2 groups, 5 nodes, 5 streams (ack-count×3 busy×1 pauser×1)",
		"the second crash reported late, the window's lag slope still falling from the first"},
	{2569857674113296304, "flapping of sa-6 ×3 from 41.06s: 3 groups, 15 nodes, 11 streams (ack-count×2 ack-every×1 batch-producer×2 bursty×3 busy×1 deleted×2 idle×2 steady×4)",
		"the restart's pull request made the outage look like a pause, and it was learned"},
	{9997215599334160647, "bottleneck of ap-5 at 45.6s (68%): 4 groups, 11 nodes, 7 streams (ack-every×2 batch-producer×1 busy×1 deleted×1 idle×2 pauser×1 steady×2 trickle×2)",
		"a slow node's lag wobbles and the rule's for kept starting over"},
	{8496424766884044596, "bottleneck of me-4 at 47.15s (30%): 4 groups, 13 nodes, 11 streams (ack-every×1 batch-producer×1 bursty×4 busy×1 deleted×1 idle×2 late×1 pauser×2 steady×1 trickle×1)",
		"young baselines made the background's slow growth look like a load rise"},
	{13904459760148686067, "bottleneck of sa-6 at 1m8.73s (53%): 3 groups, 10 nodes, 8 streams (batch-producer×4 bursty×2 busy×1 idle×1 pauser×1 trickle×1)",
		"suppressed by a load rise on another stream"},
	{18314714065090358645, "bottleneck of eu-2 at 41.23s (35%): 2 groups, 3 nodes, 3 streams (busy×1 idle×1 steady×1)",
		"in a two-node system its own rise passed for the system's"},
	{2286861348936346343, "bottleneck of us-4 at 41.18s (51%): 2 groups, 7 nodes, 6 streams (ack-count×2 ack-every×1 batch-producer×1 bursty×2 busy×1 deleted×1)",
		"a slow node (6 msgs/s at 51%) needs time to build the lag a bottleneck needs"},
}

// defaultBase fixes the seeds a plain run draws, so a run is repeatable;
// HAPPEN_PROPERTY_BASE=random draws new ones (make property).
const defaultBase = 20261203

func TestPropertyDetection(t *testing.T) {
	b := builtinRules(t)
	var seeds []uint64
	for _, r := range regressions {
		seeds = append(seeds, r.seed)
		sc := flowsim.Healthy(rand.New(rand.NewPCG(r.seed, 1)))
		if !strings.HasPrefix(r.name, "healthy:") {
			sc, _ = flowsim.Faulty(rand.New(rand.NewPCG(r.seed, 2)))
		}
		if sc.Name != r.name {
			t.Errorf("regression seed %d (%s) now gives %q, not %q: the generator changed; find the case again", r.seed, r.why, sc.Name, r.name)
		}
	}
	switch one := seedFromEnv(t); {
	case *seedFlag != 0:
		seeds = []uint64{*seedFlag}
	case one != 0:
		seeds = []uint64{one}
	default:
		base := uint64(defaultBase)
		if v := os.Getenv("HAPPEN_PROPERTY_BASE"); v == "random" {
			base = uint64(time.Now().UnixNano())
		} else if v != "" {
			b, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("HAPPEN_PROPERTY_BASE: %v", err)
			}
			base = b
		}
		n := propertySeeds
		if v := os.Getenv("HAPPEN_PROPERTY_SEEDS"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				t.Fatalf("HAPPEN_PROPERTY_SEEDS: %v", err)
			}
		}
		t.Logf("property seeds: base %d (HAPPEN_PROPERTY_BASE=%d HAPPEN_PROPERTY_SEEDS=%d reruns them), %d seeds + %d regression seeds", base, base, n, n, len(regressions))
		for i := range n {
			seeds = append(seeds, splitmix(base+uint64(i)))
		}
	}
	for _, seed := range seeds {
		sc := flowsim.Healthy(rand.New(rand.NewPCG(seed, 1)))
		t.Run(fmt.Sprintf("healthy/%d", seed), func(t *testing.T) {
			t.Parallel()
			check(t, b, seed, sc, flowsim.Outcome{Kind: flowsim.KindHealthy})
		})
		fsc, o := flowsim.Faulty(rand.New(rand.NewPCG(seed, 2)))
		t.Run(fmt.Sprintf("%s/%d", o.Kind, seed), func(t *testing.T) {
			t.Parallel()
			check(t, b, seed, fsc, o)
		})
	}
}

func seedFromEnv(t *testing.T) uint64 {
	v := os.Getenv("HAPPEN_PROPERTY_SEED")
	if v == "" {
		return 0
	}
	s, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("HAPPEN_PROPERTY_SEED: %v", err)
	}
	return s
}

// splitmix spreads consecutive bases over the seed space.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// builtin is the ruleset under test and the one of its vars the
// properties need.
type builtin struct {
	set *rules.Set
	// loadRise is the rise of most nodes' work past which the rules defer
	// a node that falls behind to the overload rule.
	loadRise float64
	// bottleneckLag is how deep a bottleneck's lag must be.
	bottleneckLag float64
}

func builtinRules(t *testing.T) builtin {
	t.Helper()
	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		t.Fatalf("built-in rules: %v", err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		t.Fatal(err)
	}
	num := func(name string) float64 {
		switch v := rs.Vars[name].(type) {
		case float64:
			return v
		case int:
			return float64(v)
		}
		t.Fatalf("rulesets/default.yaml: vars.%s is not a number", name)
		return 0
	}
	return builtin{set: set, loadRise: num("loadRise"), bottleneckLag: num("bottleneckLag")}
}

// emitted is one transition, in scenario time.
type emitted struct {
	at       time.Duration
	kind     rules.Kind
	emit     string // events.TypeNodeDown or events.TypeSystemDown
	pattern  string
	node     string // node id; "" for system events
	nodes    []string
	incident string
	reason   string
}

func (e emitted) String() string {
	subject := e.node
	if e.emit == events.TypeSystemDown {
		subject = "system " + strings.Join(e.nodes, ",")
	}
	verb := "down"
	if e.kind == rules.Resolve {
		reason := e.reason
		if reason == events.ReasonCleared {
			reason = "cleared"
		}
		verb = "up (" + reason + ")"
	}
	return fmt.Sprintf("%8.2fs %s %s %s [%s]", e.at.Seconds(), e.pattern, verb, subject, e.incident)
}

// trace is one run: what was emitted and the flow at every tick.
type trace struct {
	sc     flowsim.Scenario
	sim    *flowsim.Sim
	out    []emitted
	ticks  []time.Duration
	states []*snapshot.State
	// errs are rule expressions that failed at run time: the built-in
	// rules must never fail on any flow.
	errs []string
}

// simulate runs sc through a tracker and an evaluator as the engine does.
func simulate(set *rules.Set, sc flowsim.Scenario) *trace {
	sim := flowsim.New(sc)
	sc = sim.Scenario()
	tr := flow.NewTracker(flow.ForInterval(time.Second))
	n := 0
	out := &trace{sc: sc, sim: sim}
	ev := rules.NewEvaluator(set, rules.ForInterval(time.Second),
		rules.WithIDs(func() string { n++; return fmt.Sprintf("i%d", n) }),
		rules.OnError(func(r *rules.Rule, subject string, err error) {
			out.errs = append(out.errs, fmt.Sprintf("%s on %q: %v", r.Name, subject, err))
		}))
	for {
		snap, ok := sim.Next()
		if !ok {
			return out
		}
		st := tr.Update(snap)
		at := snap.At.Sub(sc.Start)
		out.ticks = append(out.ticks, at)
		out.states = append(out.states, st)
		for _, x := range ev.Eval(snap.At, st) {
			e := emitted{at: at, kind: x.Kind, emit: x.Incident.Rule.Emit, pattern: x.Incident.Rule.Pattern,
				incident: x.Incident.ID, reason: x.Reason, node: x.Node.Consumer}
			if e.emit == events.TypeSystemDown {
				for _, k := range x.Incident.Nodes {
					e.nodes = append(e.nodes, k.Consumer)
				}
			}
			out.out = append(out.out, e)
		}
	}
}

// loadRose reports whether, at some time in [from, to], the scenario's
// own load faults had most publishing streams' consumers getting more than
// loadRise times what they got a baseline half-life (60s) before. It reads
// the scenario, not the tracker, so a tracker that reports a rise where
// there is none cannot relax the property.
func loadRose(sc flowsim.Scenario, from, to time.Duration, loadRise float64) bool {
	const halfLife = time.Minute // flow.DefaultBaselineHalfLife
	factor := func(stream string, t time.Duration) float64 {
		f := 1.0
		for _, l := range sc.Faults {
			if l.Kind != flowsim.Load || (l.Stream != "" && l.Stream != stream) || t < l.At {
				continue
			}
			if l.Hold > 0 && t >= l.At+l.Rise+l.Hold {
				continue
			}
			part := 1.0
			if l.Rise > 0 && t < l.At+l.Rise {
				part = float64(t-l.At) / float64(l.Rise)
			}
			f *= 1 + (l.Factor-1)*part
		}
		return f
	}
	busy := map[string]bool{}
	for _, st := range sc.Streams {
		busy[st.Name] = st.Publish.MeanRate() > 0
	}
	for t := from; t <= to; t += time.Second {
		rising, all := 0, 0
		for _, c := range sc.Consumers {
			if !busy[c.Stream] {
				continue
			}
			all++
			if factor(c.Stream, t) > loadRise*factor(c.Stream, t-halfLife) {
				rising++
			}
		}
		if 2*rising > all {
			return true
		}
	}
	return false
}

// fires returns the downs emitted that match.
func (tr *trace) fires(match func(e emitted) bool) []emitted {
	var out []emitted
	for _, e := range tr.out {
		if e.kind == rules.Fire && match(e) {
			out = append(out, e)
		}
	}
	return out
}

func nodeDowns(id string) func(emitted) bool {
	return func(e emitted) bool { return e.emit == events.TypeNodeDown && e.node == id }
}

func systemDowns(e emitted) bool { return e.emit == events.TypeSystemDown }

// openAt reports whether node id has an open node.down of one of patterns
// at time at.
func (tr *trace) openAt(id string, at time.Duration, patterns ...string) bool {
	open := map[string]bool{}
	for _, e := range tr.out {
		if e.at > at {
			break
		}
		if e.emit != events.TypeNodeDown || e.node != id || !slices.Contains(patterns, e.pattern) {
			continue
		}
		open[e.incident] = e.kind == rules.Fire
	}
	for _, o := range open {
		if o {
			return true
		}
	}
	return false
}

// check runs sc and reports every property it breaks.
func check(t *testing.T, b builtin, seed uint64, sc flowsim.Scenario, o flowsim.Outcome) {
	tr := simulate(b.set, sc)
	var v []string
	bad := func(tag, format string, args ...any) {
		v = append(v, fmt.Sprintf("[%s] %s", tag, fmt.Sprintf(format, args...)))
	}
	watch := slices.Clone(o.Nodes)

	// First the simulation itself: a broken invariant or a background node
	// that fell behind is a generator bug, not a detector miss.
	if err := tr.sim.Err(); err != nil {
		bad("simulator", "%v", err)
	}
	for _, e := range tr.errs {
		bad("rule-error", "%s", e)
	}
	if o.Kind != flowsim.KindOverload && o.Kind != flowsim.KindNested {
		background := o.Background
		if o.Kind == flowsim.KindHealthy {
			for _, c := range sc.Consumers {
				background = append(background, c.ID)
			}
		}
		for _, id := range background {
			if l := tr.sim.MaxTimeLag(id); l > 15*time.Second {
				bad("simulator", "background node %s fell behind: a message waited %v", id, l)
			}
		}
	}

	// No node outside the outcome goes down, ever.
	for _, e := range tr.fires(func(e emitted) bool { return e.emit == events.TypeNodeDown && !slices.Contains(o.Nodes, e.node) }) {
		bad("false-alarm", "%s down for %s (%s), which stays healthy", e.pattern, e.node, shapeOf(sc, e.node))
		watch = append(watch, e.node)
	}
	sys := tr.fires(systemDowns)
	overload := o.Kind == flowsim.KindOverload || o.Kind == flowsim.KindNested
	if !overload {
		for _, e := range sys {
			bad("false-alarm", "system.down %s at %.1fs (nodes %v)", e.pattern, e.at.Seconds(), e.nodes)
		}
	}

	// stays checks that a permanent fault's incident, once open, stays open
	// to the end of the run and fires once: an incident that resolves and
	// fires again every few ticks is no detection.
	stays := func(id, pattern string, first emitted) {
		if n := len(tr.fires(func(e emitted) bool { return e.emit == events.TypeNodeDown && e.node == id })); n > 1 {
			bad("repeated", "%d node.down for %s, whose fault never ends; want one", n, id)
		}
		for _, at := range tr.ticks {
			if at >= first.at && !tr.openAt(id, at, pattern) {
				bad("reopened", "%s for %s not open at %.1fs, its fault not over", pattern, id, at.Seconds())
				return
			}
		}
	}
	within := func(tag string, id string, pattern string, from time.Duration, bound time.Duration, permanent bool) {
		downs := tr.fires(nodeDowns(id))
		var first *emitted
		for i := range downs {
			e := downs[i]
			if e.at < from {
				bad("false-alarm", "%s down for %s at %.1fs, before its fault at %.1fs", e.pattern, id, e.at.Seconds(), from.Seconds())
				continue
			}
			if first == nil {
				first = &downs[i]
			}
			if e.pattern != pattern {
				bad("wrong-pattern", "%s down for %s at %.1fs; want %s", e.pattern, id, e.at.Seconds(), pattern)
			}
		}
		switch {
		case first == nil:
			bad(tag, "no %s for %s (fault at %.1fs)", pattern, id, from.Seconds())
		case first.at > from+bound:
			bad("late", "%s for %s %.1fs after its fault; bound %v", first.pattern, id, (first.at - from).Seconds(), bound)
		}
		if first != nil && permanent {
			stays(id, pattern, *first)
		}
	}

	switch o.Kind {
	case flowsim.KindHealthy:
	case flowsim.KindNodeFailure:
		within("missed", o.Nodes[0], "node-failure", o.At, boundNodeFailure, true)
	case flowsim.KindBottleneck:
		// The rule waits for bottleneckLag messages to wait: at a slow
		// node's small deficit, that alone takes a while.
		bound := boundBottleneck + time.Duration(b.bottleneckLag/deficit(sc, o)*float64(time.Second))
		if loadRose(sc, o.At, o.At+boundBottleneck, b.loadRise) {
			bound = boundBottleneckUnderLoad
		}
		within("missed", o.Nodes[0], "bottleneck", o.At, bound, false)
	case flowsim.KindPartition:
		incidents := map[string]bool{}
		for _, id := range o.Nodes {
			downs := tr.fires(nodeDowns(id))
			var first *emitted
			for i, e := range downs {
				switch {
				case e.at < o.At:
					bad("false-alarm", "%s down for %s at %.1fs, before the cut", e.pattern, id, e.at.Seconds())
				case e.pattern != "partition":
					bad("wrong-pattern", "%s for %s (%s) of the cut group at %.1fs", e.pattern, id, shapeOf(sc, id), e.at.Seconds())
				case first == nil:
					first = &downs[i]
				}
			}
			switch {
			case first == nil:
				bad("missed", "no partition for %s (%s) of the cut group", id, shapeOf(sc, id))
			case first.at > o.At+boundPartition:
				bad("late", "partition for %s %.1fs after the cut; bound %v", id, (first.at - o.At).Seconds(), boundPartition)
			default:
				incidents[first.incident] = true
				stays(id, "partition", *first)
			}
		}
		if len(incidents) > 1 {
			bad("split", "the cut group's partition is %d incidents, not one", len(incidents))
		}
	case flowsim.KindOverload, flowsim.KindNested:
		bound := boundSpike
		if o.Ramp {
			bound = boundRamp
		}
		var over []emitted
		for _, e := range sys {
			if e.pattern == "overload" {
				over = append(over, e)
			} else {
				bad("wrong-pattern", "system.down %s at %.1fs", e.pattern, e.at.Seconds())
			}
		}
		switch {
		case len(over) == 0:
			bad("missed", "no system.down overload (past capacity at %.1fs)", o.At.Seconds())
		case len(over) > 1:
			bad("repeated", "%d system.down overload, want one", len(over))
		}
		if len(over) > 0 {
			if over[0].at < o.LoadAt {
				bad("false-alarm", "overload at %.1fs, before publishing rose at %.1fs", over[0].at.Seconds(), o.LoadAt.Seconds())
			} else if over[0].at > o.At+bound {
				bad("late", "overload %.1fs after publishing passed capacity; bound %v", (over[0].at - o.At).Seconds(), bound)
			}
		}
		if o.Kind == flowsim.KindNested {
			within("missed", o.Nodes[0], "node-failure", o.CrashAt, boundNodeFailure, true)
		}
	case flowsim.KindFlapping:
		id := o.Nodes[0]
		for _, e := range tr.fires(nodeDowns(id)) {
			if e.at < o.Crashes[0].From {
				bad("false-alarm", "%s down for %s at %.1fs, before it first crashed", e.pattern, id, e.at.Seconds())
			} else if e.pattern != "node-failure" && e.pattern != "flapping" {
				bad("wrong-pattern", "%s down for flapping %s at %.1fs", e.pattern, id, e.at.Seconds())
			}
		}
		// The first crash is a node failure; from the second, the built-in
		// flapping rule holds the node: each later crash is covered by a
		// flapping incident, not by an incident left open from the first.
		for i, c := range o.Crashes {
			patterns := []string{"node-failure"}
			if i > 0 {
				patterns = []string{"flapping"}
			}
			covered := false
			for _, at := range tr.ticks {
				if at >= c.From && at <= c.From+boundFlapCrash && tr.openAt(id, at, patterns...) {
					covered = true
					break
				}
			}
			if !covered {
				bad("uncovered-crash", "crash %d of %s at %.1fs (down %v): no open incident within %v", i+1, id, c.From.Seconds(), c.To-c.From, boundFlapCrash)
			}
		}
	}
	if len(v) == 0 {
		return
	}
	t.Errorf("seed %d: %s: %d properties broken\n  %s\nreproduce: go test ./rulesets -run Property -seed=%d\n%s",
		seed, sc.Name, len(v), strings.Join(v, "\n  "), seed, tr.timeline(o, watch))
}

// deficit is how much faster than a slowed node acks its work arrives,
// msgs/s: its stream's mean rate less what the Slow fault left it.
func deficit(sc flowsim.Scenario, o flowsim.Outcome) float64 {
	for _, f := range sc.Faults {
		if f.Kind != flowsim.Slow || f.Node != o.Nodes[0] {
			continue
		}
		for _, c := range sc.Consumers {
			for _, st := range sc.Streams {
				if c.ID == f.Node && st.Name == c.Stream {
					return st.Publish.MeanRate() * (1 - f.Fraction)
				}
			}
		}
	}
	panic("bottleneck scenario without a Slow fault on its node")
}

func shapeOf(sc flowsim.Scenario, id string) string {
	for _, c := range sc.Consumers {
		if c.ID == id {
			return c.Shape
		}
	}
	return "?"
}

// timeline prints the scenario, the faults and events in time order, and
// the flow of the nodes of interest around them.
func (tr *trace) timeline(o flowsim.Outcome, watch []string) string {
	var b strings.Builder
	b.WriteString(tr.sc.Describe())
	type line struct {
		at   time.Duration
		text string
	}
	var lines []line
	for _, e := range tr.sim.Events() {
		lines = append(lines, line{e.At, "sim  " + e.String()})
	}
	for _, e := range tr.out {
		lines = append(lines, line{e.at, "emit " + e.String()})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return int(a.at - b.at) })
	b.WriteString("timeline:\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s\n", l.text)
	}
	// Flow of the watched nodes from a little before their fault (or the
	// first down) to a little after.
	slices.Sort(watch)
	watch = slices.Compact(watch)
	for _, id := range watch {
		from, to := o.At-5*time.Second, o.At+20*time.Second
		switch o.Kind {
		case flowsim.KindNested:
			from, to = o.CrashAt-5*time.Second, o.CrashAt+10*time.Second
		case flowsim.KindFlapping:
			from, to = o.At-3*time.Second, o.Crashes[len(o.Crashes)-1].To+5*time.Second
		}
		if !slices.Contains(o.Nodes, id) || o.Kind == flowsim.KindHealthy {
			if f := tr.fires(nodeDowns(id)); len(f) > 0 {
				from, to = f[0].at-12*time.Second, f[0].at+time.Second
			}
		}
		fmt.Fprintf(&b, "flow of %s (%s):\n", id, shapeOf(tr.sc, id))
		for i, at := range tr.ticks {
			if at < from || at > to {
				continue
			}
			for _, n := range tr.states[i].Nodes {
				if n.ID == id {
					fmt.Fprintf(&b, "  %7.2fs waiting %6d (pending %6d, ack %5d) ack %7.1f/s arr %7.1f/s slope %7.1f since-ack %5.1fs threshold %4.1fs stalled %-5v behind %-5v idle %-5v pulls %d\n",
						at.Seconds(), n.MessagesWaiting, n.NumPending, n.AckPending, n.AckRate, n.ArrivalRate, n.LagGrowthRate,
						n.SecondsSinceLastAck, n.StallThreshold, n.Stalled, n.FallingBehind, n.Idle, n.WaitingPulls)
				}
			}
		}
	}
	if o.Kind == flowsim.KindOverload || o.Kind == flowsim.KindNested {
		b.WriteString("system:\n")
		for i, at := range tr.ticks {
			if at < o.LoadAt-5*time.Second || at > o.At+boundRamp {
				continue
			}
			s := tr.states[i].System
			fmt.Fprintf(&b, "  %7.2fs judged %d/%d falling behind %d (%.2f) stalled %d arrivals %.1f/s acks %.1f/s waiting %d\n",
				at.Seconds(), s.JudgedNodes, s.Nodes, s.FallingBehindNodes, s.FallingBehindFraction, s.StalledNodes, s.ArrivalRate, s.AckRate, s.MessagesWaiting)
		}
	}
	return b.String()
}
