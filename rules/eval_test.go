package rules

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/sdk/events"
)

func mustSet(t *testing.T, yaml string) *Set {
	t.Helper()
	rs, err := Parse("test.yaml", []byte(yaml), LoadOptions{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	set, err := NewSet(rs)
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	return set
}

func seqIDs() EvalOption {
	n := 0
	return WithIDs(func() string { n++; return fmt.Sprintf("inc-%d", n) })
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

type nodeSpec struct {
	id      string
	group   string
	waiting int
	stalled bool
	lagging bool
}

func flowState(nodes ...nodeSpec) *snapshot.State {
	st := &snapshot.State{}
	groups := map[string]*snapshot.Group{}
	var order []string
	for _, n := range nodes {
		st.Nodes = append(st.Nodes, snapshot.Node{
			Key: snapshot.NodeKey{Stream: "S", Consumer: n.id}, ID: n.id, Stream: "S", Consumer: n.id,
			Group: n.group, MessagesWaiting: n.waiting, Stalled: n.stalled, Lagging: n.lagging,
		})
		st.System.Nodes++
		if n.stalled {
			st.System.StalledNodes++
		}
		if n.lagging {
			st.System.LaggingNodes++
		}
		if n.group == "" {
			continue
		}
		g := groups[n.group]
		if g == nil {
			g = &snapshot.Group{Name: n.group}
			groups[n.group] = g
			order = append(order, n.group)
		}
		g.Size++
		if n.stalled {
			g.Stalled++
		}
	}
	for _, name := range order {
		g := groups[name]
		g.StalledFraction = float64(g.Stalled) / float64(g.Size)
		st.Groups = append(st.Groups, *g)
	}
	if st.System.Nodes > 0 {
		st.System.LaggingFraction = float64(st.System.LaggingNodes) / float64(st.System.Nodes)
		st.System.StalledFraction = float64(st.System.StalledNodes) / float64(st.System.Nodes)
	}
	return st
}

// transitions renders them compactly: "fire rule node", "resolve rule node reason".
func transitions(trs []Transition) string {
	var parts []string
	for _, tr := range trs {
		s := tr.Kind.String() + " " + tr.Incident.Rule.Name
		if tr.Node.Consumer != "" {
			s += " " + tr.Node.Consumer
		}
		if tr.Reason != "" {
			s += " " + tr.Reason
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

const lagRule = `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 10
    for: 3s
    pattern: lag
`

// 1. An alert fires only after its condition held for `for`, once.
func TestEvalPendingThenFiring(t *testing.T) {
	e := NewEvaluator(mustSet(t, lagRule), seqIDs())
	steps := []struct {
		at      int
		waiting int
		want    string
	}{
		{0, 50, ""},              // pending
		{2, 50, ""},              // still pending
		{3, 50, "fire lag n1"},   // held 3s
		{4, 50, ""},              // firing, nothing new
		{5, 0, "resolve lag n1"}, // cleared, no keepFiringFor
		{6, 50, ""},              // pending again
	}
	for _, s := range steps {
		got := transitions(e.Eval(at(s.at), flowState(nodeSpec{id: "n1", waiting: s.waiting})))
		if got != s.want {
			t.Fatalf("t=%ds: got %q, want %q", s.at, got, s.want)
		}
	}
}

// 2. A condition that drops during `for` starts over.
func TestEvalPendingResets(t *testing.T) {
	e := NewEvaluator(mustSet(t, lagRule))
	for _, s := range []struct {
		at, waiting int
		want        string
	}{{0, 50, ""}, {2, 0, ""}, {3, 50, ""}, {5, 50, ""}, {6, 50, "fire lag n1"}} {
		if got := transitions(e.Eval(at(s.at), flowState(nodeSpec{id: "n1", waiting: s.waiting}))); got != s.want {
			t.Fatalf("t=%ds: got %q, want %q", s.at, got, s.want)
		}
	}
}

// 3. resolve gives hysteresis and keepFiringFor holds before resolving.
func TestEvalResolveAndKeepFiring(t *testing.T) {
	set := mustSet(t, `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 100
    resolve: node.messagesWaiting < 10
    keepFiringFor: 2s
    pattern: lag
`)
	e := NewEvaluator(set)
	for _, s := range []struct {
		at, waiting int
		want        string
	}{
		{0, 200, "fire lag n1"},
		{1, 50, ""}, // when false, resolve false: still firing
		{2, 5, ""},  // cleared, held
		{3, 50, ""}, // not cleared any more: the hold restarts
		{4, 5, ""},  // cleared again
		{5, 5, ""},  // 1s of 2s
		{6, 5, "resolve lag n1"},
	} {
		if got := transitions(e.Eval(at(s.at), flowState(nodeSpec{id: "n1", waiting: s.waiting}))); got != s.want {
			t.Fatalf("t=%ds: got %q, want %q", s.at, got, s.want)
		}
	}
}

// 4. cooldown: no second firing for the same node within it of the last end.
func TestEvalCooldown(t *testing.T) {
	type step struct {
		at, waiting int
		want        string
	}
	for name, steps := range map[string][]step{
		"held through the cooldown fires when it ends": {
			{0, 50, "fire lag n1"},
			{1, 0, "resolve lag n1"},
			{2, 50, ""},  // cooling down
			{10, 50, ""}, // 9s after the end
			{11, 50, "fire lag n1"},
		},
		// A failure that held through its for during the cooldown is owed:
		// it fires when the cooldown ends, even if it has cleared by then,
		// and resolves at the next evaluation. A cooldown delays; it never
		// swallows.
		"over before the cooldown ends is owed": {
			{0, 50, "fire lag n1"},
			{1, 0, "resolve lag n1"},
			{2, 50, ""}, // a second failure, in the cooldown
			{3, 0, ""},  // over before the cooldown ends
			{5, 0, ""},
			{11, 0, "fire lag n1"}, // owed
			{12, 0, "resolve lag n1"},
			{13, 0, ""},
			{30, 0, ""},
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 10
    cooldown: 10s
    pattern: lag
`))
			for _, s := range steps {
				if got := transitions(e.Eval(at(s.at), flowState(nodeSpec{id: "n1", waiting: s.waiting}))); got != s.want {
					t.Fatalf("t=%ds: got %q, want %q", s.at, got, s.want)
				}
			}
		})
	}
}

const precedence = `
version: 1
name: t
rules:
  - name: low
    when: node.messagesWaiting > 10
    pattern: low
    priority: 1
  - name: high
    when: node.stalled
    for: 2s
    pattern: high
    priority: 5
`

// 5. A higher-priority rule pending on a node holds a lower one back, and
// one that fires takes over a node a lower one holds.
func TestEvalPrecedence(t *testing.T) {
	e := NewEvaluator(mustSet(t, precedence))
	// high pending from t=0: low must not fire although it holds at once.
	if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50, stalled: true}))); got != "" {
		t.Fatalf("t=0: %q", got)
	}
	if got := transitions(e.Eval(at(2), flowState(nodeSpec{id: "n1", waiting: 50, stalled: true}))); got != "fire high n1" {
		t.Fatalf("t=2: %q", got)
	}

	e = NewEvaluator(mustSet(t, precedence))
	if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "fire low n1" {
		t.Fatalf("low alone: %q", got)
	}
	e.Eval(at(1), flowState(nodeSpec{id: "n1", waiting: 50, stalled: true}))
	got := transitions(e.Eval(at(3), flowState(nodeSpec{id: "n1", waiting: 50, stalled: true})))
	if got != "fire high n1; resolve low n1 superseded" {
		t.Fatalf("takeover: %q", got)
	}
}

const groupRule = `
version: 1
name: t
rules:
  - name: part
    scope: group
    when: group.size >= 2 && group.stalledFraction >= 0.75
    pattern: partition
    priority: 10
  - name: fail
    when: node.stalled
    pattern: node-failure
`

// 6. A group rule downs every member under one incident; the members are
// not also reported by a lower rule; a member that leaves ends its part.
func TestEvalGroupIncident(t *testing.T) {
	e := NewEvaluator(mustSet(t, groupRule), seqIDs())
	st := flowState(
		nodeSpec{id: "a1", group: "a", stalled: true, waiting: 5},
		nodeSpec{id: "a2", group: "a", stalled: true, waiting: 5},
		nodeSpec{id: "b1", group: "b", waiting: 0},
	)
	trs := e.Eval(at(0), st)
	if got := transitions(trs); got != "fire part a1; fire part a2" {
		t.Fatalf("got %q", got)
	}
	if trs[0].Incident != trs[1].Incident || trs[0].Incident.ID != "inc-1" {
		t.Fatal("members of one partition must share one incident")
	}
	st2 := flowState(nodeSpec{id: "a1", group: "a", stalled: true, waiting: 5}, nodeSpec{id: "b1", group: "b"})
	st2.Left = []snapshot.NodeKey{{Stream: "S", Consumer: "a2"}}
	// a1 alone: group size 1 < 2, so the partition clears and a1 ends too.
	if got := transitions(e.Eval(at(1), st2)); got != "resolve part a2 left; resolve part a1; fire fail a1" {
		t.Fatalf("got %q", got)
	}
}

// 7. A system rule fires once, holding the lagging and stalled nodes.
func TestEvalSystemIncident(t *testing.T) {
	e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: overload
    scope: system
    when: system.laggingFraction >= 0.5
    pattern: overload
    priority: 10
  - name: lag
    when: node.lagging
    pattern: bottleneck
`))
	st := flowState(nodeSpec{id: "n1", lagging: true}, nodeSpec{id: "n2", lagging: true}, nodeSpec{id: "n3"})
	trs := e.Eval(at(0), st)
	if got := transitions(trs); got != "fire overload" {
		t.Fatalf("got %q", got)
	}
	if n := trs[0].Incident.Nodes; len(n) != 2 || n[0].Consumer != "n1" || n[1].Consumer != "n2" {
		t.Fatalf("nodes = %v", n)
	}
	if trs[0].Incident.Rule.Emit != events.TypeSystemDown {
		t.Fatal("system rules emit system.down")
	}
}

// 8. Reload: an unchanged rule keeps its incident; a removed one ends it.
func TestEvalSwap(t *testing.T) {
	set := mustSet(t, lagRule)
	e := NewEvaluator(set)
	e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50}))
	if got := transitions(e.Eval(at(3), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "fire lag n1" {
		t.Fatalf("got %q", got)
	}
	if trs := e.Swap(mustSet(t, lagRule), at(4)); len(trs) != 0 {
		t.Fatalf("unchanged rule: %s", transitions(trs))
	}
	if got := transitions(e.Eval(at(5), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "" {
		t.Fatalf("incident survived the reload, nothing new expected: %q", got)
	}
	changed := mustSet(t, strings.Replace(lagRule, "> 10", "> 20", 1))
	if got := transitions(e.Swap(changed, at(6))); got != "resolve lag n1 rule-removed" {
		t.Fatalf("changed rule: %q", got)
	}
}

// 9. An unobserved node is neither down nor recovered: its incident is
// frozen, and a pending alert starts over.
func TestEvalUnobservedFreezes(t *testing.T) {
	e := NewEvaluator(mustSet(t, lagRule))
	e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2", waiting: 50}))
	if got := transitions(e.Eval(at(3), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "fire lag n1" {
		t.Fatalf("got %q", got) // n2 unobserved at t=3: its pending alert is dropped
	}
	st := flowState(nodeSpec{id: "n2", waiting: 50})
	st.Unobserved = []snapshot.NodeKey{{Stream: "S", Consumer: "n1"}}
	if got := transitions(e.Eval(at(4), st)); got != "" {
		t.Fatalf("unobserved: %q", got)
	}
	if got := transitions(e.Eval(at(7), flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2", waiting: 50}))); got != "fire lag n2" {
		t.Fatalf("n2 needs its full `for` again: %q", got)
	}
}

// 10. A rule that fails at run time changes nothing and reports the error.
func TestEvalRuntimeError(t *testing.T) {
	var errs []string
	e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: div
    when: node.id != "" && int(node.id) > 0
    pattern: odd
`), OnError(func(r *Rule, subject string, err error) { errs = append(errs, r.Name+" "+subject) }))
	trs := e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 1}))
	if len(trs) != 0 || len(errs) != 1 || errs[0] != "div S/n1" {
		t.Fatalf("transitions %q, errors %v", transitions(trs), errs)
	}
}

const stallRule = `
version: 1
name: t
rules:
  - name: fail
    when: node.stalled
    pattern: node-failure
`

// 11. A node warming up after a gap is not judged: its incident neither
// resolves (its stall clock restarted) nor does a new one fire.
func TestEvalWarmingFreezes(t *testing.T) {
	e := NewEvaluator(mustSet(t, stallRule))
	if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "n1", stalled: true, waiting: 5}))); got != "fire fail n1" {
		t.Fatalf("t=0: %q", got)
	}
	warm := flowState(nodeSpec{id: "n1", waiting: 5})
	warm.Nodes[0].Warming = true
	if got := transitions(e.Eval(at(1), warm)); got != "" {
		t.Fatalf("warming: %q, want the incident frozen", got)
	}
	if len(e.Active()) != 1 {
		t.Fatal("the incident must stay open while the node warms up")
	}
	if got := transitions(e.Eval(at(2), flowState(nodeSpec{id: "n1", stalled: true, waiting: 5}))); got != "" {
		t.Fatalf("still stalled: %q", got)
	}
	if got := transitions(e.Eval(at(3), flowState(nodeSpec{id: "n1", waiting: 5}))); got != "resolve fail n1" {
		t.Fatalf("judged and cleared: %q", got)
	}
}

// 12. A group incident whose group is gone while its nodes are still
// observed (they were regrouped) ends; one whose nodes are unobserved stays.
func TestEvalGroupGoneWhileNodesRemain(t *testing.T) {
	e := NewEvaluator(mustSet(t, groupRule))
	if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "a1", group: "a", stalled: true, waiting: 5}, nodeSpec{id: "a2", group: "a", stalled: true, waiting: 5}))); got != "fire part a1; fire part a2" {
		t.Fatalf("t=0: %q", got)
	}
	gone := flowState(nodeSpec{id: "x1"})
	gone.Unobserved = []snapshot.NodeKey{{Stream: "S", Consumer: "a1"}, {Stream: "S", Consumer: "a2"}}
	if got := transitions(e.Eval(at(1), gone)); got != "" {
		t.Fatalf("nodes unobserved: %q, want frozen", got)
	}
	regrouped := flowState(nodeSpec{id: "a1", group: "b"}, nodeSpec{id: "a2", group: "b"})
	if got := transitions(e.Eval(at(2), regrouped)); got != "resolve part a1; resolve part a2" {
		t.Fatalf("regrouped: %q", got)
	}
}

// 13. A rule that outranks a firing group incident takes over the nodes it
// now holds; the group incident keeps the rest.
func TestEvalGroupIncidentSuperseded(t *testing.T) {
	e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: outage
    scope: system
    when: system.stalledFraction >= 0.75
    pattern: outage
    priority: 50
  - name: part
    scope: group
    when: group.size >= 2 && group.stalledFraction >= 0.75
    pattern: partition
    priority: 10
`))
	st := flowState(nodeSpec{id: "a1", group: "a", stalled: true}, nodeSpec{id: "a2", group: "a", stalled: true},
		nodeSpec{id: "b1", group: "b"}, nodeSpec{id: "b2", group: "b"})
	if got := transitions(e.Eval(at(0), st)); got != "fire part a1; fire part a2" {
		t.Fatalf("t=0: %q", got)
	}
	st = flowState(nodeSpec{id: "a1", group: "a", stalled: true}, nodeSpec{id: "a2", group: "a", stalled: true},
		nodeSpec{id: "b1", group: "b", stalled: true}, nodeSpec{id: "b2", group: "b"})
	if got := transitions(e.Eval(at(1), st)); got != "fire outage; resolve part a1 superseded; resolve part a2 superseded" {
		t.Fatalf("takeover: %q", got)
	}
	if n := len(e.Active()); n != 1 {
		t.Fatalf("%d incidents open, want only the outage", n)
	}
}

// 14. After blindness, pending alerts start over.
func TestEvalDropPending(t *testing.T) {
	e := NewEvaluator(mustSet(t, lagRule))
	e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50}))
	e.DropPending()
	if got := transitions(e.Eval(at(3), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "" {
		t.Fatalf("fired on a `for` not seen to hold: %q", got)
	}
	if got := transitions(e.Eval(at(6), flowState(nodeSpec{id: "n1", waiting: 50}))); got != "fire lag n1" {
		t.Fatalf("after a full `for`: %q", got)
	}
}

// 15. With a tolerance of half the interval, ticks that arrive a few
// milliseconds early still count: `for: 3s` fires on the third tick after
// the condition began, not sometimes the fourth; keepFiringFor likewise.
// Without tolerance the same early ticks wait one tick more.
func TestEvalToleranceAbsorbsJitter(t *testing.T) {
	set := mustSet(t, `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 10
    for: 3s
    keepFiringFor: 2s
    pattern: lag
`)
	early := func(s int) time.Time { return at(s).Add(-time.Duration(s) * 3 * time.Millisecond) }
	for _, c := range []struct {
		name  string
		opts  []EvalOption
		fire  int
		clear int
	}{
		{"tolerance", []EvalOption{WithTolerance(500 * time.Millisecond)}, 3, 7},
		{"none", nil, 4, 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := NewEvaluator(set, c.opts...)
			fired, resolved := -1, -1
			for s := 0; s <= 10; s++ {
				waiting := 50
				if s >= 5 {
					waiting = 0
				}
				for _, tr := range e.Eval(early(s), flowState(nodeSpec{id: "n1", waiting: waiting})) {
					switch tr.Kind {
					case Fire:
						fired = s
					case Resolve:
						resolved = s
					}
				}
			}
			if fired != c.fire || resolved != c.clear {
				t.Fatalf("fired at tick %d, resolved at %d; want %d and %d", fired, resolved, c.fire, c.clear)
			}
		})
	}
}

// 16. Restore reopens a stored incident as firing, refuses one whose rule
// is gone, and leaves alone a subject this run already fired for.
func TestEvalRestore(t *testing.T) {
	set := mustSet(t, lagRule)
	fp := set.Rules[0].Fingerprint
	n1 := []snapshot.NodeKey{{Stream: "S", Consumer: "n1"}}
	n2 := []snapshot.NodeKey{{Stream: "S", Consumer: "n2"}}

	e := NewEvaluator(set, seqIDs())
	for s := 0; s <= 3; s++ { // n1 fires in this run, n2 has no lag yet
		e.Eval(at(s), flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2"}))
	}
	if got := e.Restore("gone", "", "old-0", at(-60), n1); got != RuleGone {
		t.Errorf("rule gone: %v, want RuleGone", got)
	}
	if got := e.Restore(fp, "", "old-1", at(-60), n1); got != AlreadyFiring {
		t.Errorf("n1 firing in this run: %v, want AlreadyFiring", got)
	}
	if got := e.Restore(fp, "", "old-2", at(-60), n2); got != Restored {
		t.Errorf("n2: %v, want Restored", got)
	}
	ids := map[string]bool{}
	for _, inc := range e.Active() {
		ids[inc.ID] = true
	}
	if !ids["old-2"] || ids["old-1"] || len(ids) != 2 {
		t.Fatalf("active incidents %v, want this run's n1 incident and the restored old-2", ids)
	}
	// The restored incident goes on as if never interrupted: no second fire.
	if got := transitions(e.Eval(at(4), flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2", waiting: 50}))); got != "" {
		t.Fatalf("after restore: %q, want nothing", got)
	}
}

const claimRules = `
version: 1
name: t
rules:
  - name: hold
    when: node.id == "C" && node.messagesWaiting > 5
    for: 1h
    pattern: hold
    priority: 40
  - name: grp
    scope: group
    when: group.stalled >= 2
    pattern: partition
    priority: 30
  - name: nf
    when: node.stalled
    pattern: node-failure
    priority: 20
`

func activeNodes(e *Evaluator) string {
	var parts []string
	for _, inc := range e.Active() {
		var ids []string
		for _, k := range inc.Nodes {
			ids = append(ids, k.Consumer)
		}
		sort.Strings(ids)
		parts = append(parts, inc.Rule.Name+" "+strings.Join(ids, ","))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// 17. A firing group incident holds its own nodes, not every member of its
// group: a node it did not take keeps the down it has, and a node that
// joins the group later is free to be reported by a lower rule.
func TestEvalGroupIncidentHoldsOnlyItsNodes(t *testing.T) {
	e := NewEvaluator(mustSet(t, claimRules), seqIDs())
	g := func(id string, stalled bool, waiting int) nodeSpec {
		return nodeSpec{id: id, group: "g", stalled: stalled, waiting: waiting}
	}
	for i, s := range []struct {
		st   []nodeSpec
		want string
	}{
		{[]nodeSpec{g("A", false, 0), g("B", false, 0), g("C", true, 1)}, "fire nf C"},
		// C is pending for hold, outranking grp: grp takes A and B only.
		{[]nodeSpec{g("A", true, 0), g("B", true, 0), g("C", true, 10)}, "fire grp A; fire grp B"},
		// hold lets go of C; grp does not hold C, so nf keeps it.
		{[]nodeSpec{g("A", true, 0), g("B", true, 0), g("C", true, 1)}, ""},
		// D joins the group stalled: grp's incident is A and B, nf reports D.
		{[]nodeSpec{g("A", true, 0), g("B", true, 0), g("C", true, 1), g("D", true, 1)}, "fire nf D"},
	} {
		if got := transitions(e.Eval(at(i), flowState(s.st...))); got != s.want {
			t.Fatalf("tick %d: got %q, want %q", i, got, s.want)
		}
	}
	if got, want := activeNodes(e), "grp A,B; nf C; nf D"; got != want {
		t.Fatalf("active %q, want %q: one down per node", got, want)
	}
}

// 18. A system incident keeps holding its nodes through a tick where its
// expression fails, and is superseded only when a higher rule holds every
// one of its own nodes.
func TestEvalSystemIncidentClaims(t *testing.T) {
	t.Run("expression error", func(t *testing.T) {
		e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: sys
    scope: system
    when: 1 % system.stalledNodes == 0
    resolve: system.nodes == 0
    pattern: outage
    priority: 40
  - name: lag
    when: node.lagging
    pattern: lag
    priority: 10
`), seqIDs(), OnError(func(*Rule, string, error) {}))
		if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "A", stalled: true, lagging: true}))); got != "fire sys" {
			t.Fatalf("tick 0: %q", got)
		}
		// 1 % 0 fails: sys keeps its state and its node.
		if got := transitions(e.Eval(at(1), flowState(nodeSpec{id: "A", lagging: true}))); got != "" {
			t.Fatalf("tick 1: got %q, want nothing: A is held by sys", got)
		}
	})
	t.Run("supersede", func(t *testing.T) {
		e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: hi
    when: node.id != "A" && node.stalled
    pattern: hi
    priority: 40
  - name: sys
    scope: system
    when: system.stalledNodes >= 1
    pattern: outage
    priority: 30
`), seqIDs())
		if got := transitions(e.Eval(at(0), flowState(nodeSpec{id: "A", stalled: true}, nodeSpec{id: "B"}, nodeSpec{id: "C"}))); got != "fire sys" {
			t.Fatalf("tick 0: %q", got)
		}
		all := flowState(nodeSpec{id: "A", stalled: true}, nodeSpec{id: "B", stalled: true}, nodeSpec{id: "C", stalled: true})
		if got := transitions(e.Eval(at(1), all)); got != "fire hi B; fire hi C" {
			t.Fatalf("tick 1: got %q; sys holds A, which no higher rule took", got)
		}
		if got, want := activeNodes(e), "hi B; hi C; sys A"; got != want {
			t.Fatalf("active %q, want %q", got, want)
		}
	})
}

// 19. A node that left takes its cooldowns with it.
func TestEvalLeaveDropsCooldowns(t *testing.T) {
	e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 10
    cooldown: 8760h
    pattern: lag
`))
	e.Eval(at(0), flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2", waiting: 50}))
	e.Eval(at(1), flowState(nodeSpec{id: "n1"}, nodeSpec{id: "n2", waiting: 50}))
	if len(e.cooldowns) != 1 {
		t.Fatalf("%d cooldowns after n1 resolved, want 1", len(e.cooldowns))
	}
	e.Leave(at(2), []snapshot.NodeKey{{Stream: "S", Consumer: "n1"}, {Stream: "S", Consumer: "n2"}})
	if len(e.cooldowns) != 0 {
		t.Fatalf("cooldowns %v left behind by nodes that left", e.cooldowns)
	}
}

// System incidents nest: a warning system incident holds its nodes against
// warning node rules (no bottleneck per node during an overload), but a
// critical node rule still fires inside it, and the system incident stays
// open meanwhile.
func TestEvalSystemIncidentsNest(t *testing.T) {
	e := NewEvaluator(mustSet(t, `
version: 1
name: t
rules:
  - name: overload
    scope: system
    when: system.laggingNodes >= 2
    emit: system.down
    pattern: overload
    level: warning
    priority: 40
  - name: failure
    when: node.stalled
    pattern: node-failure
    level: critical
    priority: 20
  - name: slow
    when: node.lagging
    pattern: bottleneck
    level: warning
    priority: 10
`), seqIDs())
	lag := func(id string) nodeSpec { return nodeSpec{id: id, lagging: true, waiting: 100} }
	if got := transitions(e.Eval(at(0), flowState(lag("A"), lag("B"), lag("C")))); got != "fire overload" {
		t.Fatalf("tick 0: %q, want only the overload", got)
	}
	dead := nodeSpec{id: "B", lagging: true, stalled: true, waiting: 100}
	if got := transitions(e.Eval(at(1), flowState(lag("A"), dead, lag("C")))); got != "fire failure B" {
		t.Fatalf("tick 1: %q, want B's failure inside the overload", got)
	}
	if got, want := activeNodes(e), "failure B; overload A,B,C"; got != want {
		t.Fatalf("active %q, want %q", got, want)
	}
}
