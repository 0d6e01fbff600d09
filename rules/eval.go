package rules

import (
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nuid"
)

// Kind is what happened to an incident.
type Kind int

const (
	// Fire opens an incident: emit the rule's down event.
	Fire Kind = iota + 1
	// Resolve ends one: emit the matching up event.
	Resolve
)

func (k Kind) String() string {
	if k == Fire {
		return "fire"
	}
	return "resolve"
}

// Incident is one firing of one rule for one subject (a node, a group or
// the system). Its ID is the correlationId of every event it raises.
type Incident struct {
	ID      string
	Rule    *Rule
	Subject string // node key, group name, or "" for the system
	Since   time.Time
	// Nodes are the nodes it holds down: the node itself, the group's
	// members, or the lagging and stalled nodes of the system.
	Nodes []snapshot.NodeKey
}

// Transition is one event to emit. A group incident fires one transition
// per node, all sharing the Incident.
type Transition struct {
	Kind     Kind
	Incident *Incident
	// Node is set for node.down / node.up; zero for system events.
	Node   snapshot.NodeKey
	Reason string // on Resolve: one of events.Reason*
	At     time.Time
}

type state int

const (
	pending state = iota + 1
	firing
)

// levelRank orders levels for nesting: an incident of a higher rank may
// open inside a system incident of a lower one.
func levelRank(level string) int8 {
	if level == events.LevelCritical {
		return 2
	}
	return 1
}

type alertKey struct {
	rule  string // fingerprint, so an edited rule starts afresh
	node  snapshot.NodeKey
	group string
}

func (k alertKey) subject() string {
	switch {
	case k.node != snapshot.NodeKey{}:
		return k.node.String()
	case k.group != "":
		return k.group
	}
	return ""
}

type alert struct {
	rule      *Rule
	key       alertKey
	state     state
	activeAt  time.Time // when its condition began to hold
	clearedAt time.Time // when a firing alert's condition cleared; zero while it holds
	incident  *Incident
	seen      uint64 // tick of its last evaluation
	// owed marks a pending alert whose condition held through its `for`
	// while a cooldown kept it from firing: it fires when the cooldown
	// ends even if the condition has cleared by then, so a cooldown delays
	// a failure but never swallows it.
	owed bool
}

// Evaluator runs a Set every tick: the Prometheus alert state machine
// (inactive → pending for `for` → firing → resolved), with a resolve
// expression for hysteresis, keepFiringFor against flapping, cooldown, and
// precedence so that a node carries at most one active down.
//
// An Evaluator is used from one goroutine.
type Evaluator struct {
	set       *Set
	alerts    map[alertKey]*alert
	cooldowns map[alertKey]time.Time // until when a key may not fire again
	tick      uint64

	m       vm.VM
	nodeEnv NodeEnv
	grpEnv  GroupEnv
	sysEnv  SystemEnv

	// per tick
	claims []int8 // by node index: 0 free, 1 pending claim, 2 firing claim
	// sysRank and sysFiring say what a system incident holds a node with:
	// the highest level rank of the system alerts holding it, and whether
	// one of them fires. System incidents nest: they hold a node only
	// against node and group rules of their own level or lower, so a
	// critical node failure is still reported inside a warning overload.
	sysRank   []int8
	sysFiring []bool
	members   map[string][]int
	// groupOf is each node's group, found once a tick rather than once
	// per node rule.
	groupOf []*snapshot.Group
	// withAlerts holds the fingerprints of the rules with an alert at the
	// tick's start: a node rule without one looks no node up in alerts
	// unless its condition holds, which at thousands of nodes is most of
	// its cost.
	withAlerts map[string]bool
	out        []Transition
	// index finds a node's index by key; built at most once a tick, when a
	// firing group or system incident needs its own nodes found.
	index      map[snapshot.NodeKey]int
	indexBuilt bool
	st         *snapshot.State

	newID     func() string
	onError   func(r *Rule, subject string, err error)
	tolerance time.Duration
}

// EvalOption configures an Evaluator.
type EvalOption func(*Evaluator)

// WithIDs sets how incident ids are made (default: NUIDs).
func WithIDs(f func() string) EvalOption { return func(e *Evaluator) { e.newID = f } }

// WithTolerance lets durations (for, keepFiringFor, cooldown) count as
// passed up to d early. Evaluation times come from a ticker and jitter by a
// few milliseconds; with half the interval as tolerance, `for: 1s` at a 1s
// interval means the next tick, not the next or the one after at random.
func WithTolerance(d time.Duration) EvalOption { return func(e *Evaluator) { e.tolerance = d } }

// ForInterval configures an evaluator run every interval, as the engine
// runs it: durations count within half an interval (WithTolerance).
func ForInterval(interval time.Duration) EvalOption { return WithTolerance(interval / 2) }

// held reports whether d has passed from since to now, within tolerance.
func (e *Evaluator) held(now, since time.Time, d time.Duration) bool {
	return now.Sub(since) >= d-e.tolerance
}

// OnError receives expression run-time errors. The alert concerned keeps
// its state: a rule that cannot be evaluated neither fires nor resolves.
func OnError(f func(r *Rule, subject string, err error)) EvalOption {
	return func(e *Evaluator) { e.onError = f }
}

// NewEvaluator returns an evaluator for set.
func NewEvaluator(set *Set, opts ...EvalOption) *Evaluator {
	e := &Evaluator{
		set:       set,
		alerts:    map[alertKey]*alert{},
		cooldowns: map[alertKey]time.Time{},
		members:   map[string][]int{},
		newID:     nuid.Next,
		onError:   func(*Rule, string, error) {},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Set is the rule set in force.
func (e *Evaluator) Set() *Set { return e.set }

// Swap replaces the rule set. Alerts of rules whose Fingerprint is unchanged
// carry over, firing incidents included; incidents of rules removed or
// changed end, and the returned transitions say so.
func (e *Evaluator) Swap(set *Set, now time.Time) []Transition {
	keep := make(map[string]*Rule, len(set.Rules))
	for _, r := range set.Rules {
		keep[r.Fingerprint] = r
	}
	var out []Transition
	for k, a := range e.alerts {
		if r, ok := keep[k.rule]; ok {
			a.rule = r
			if a.incident != nil {
				a.incident.Rule = r
			}
			continue
		}
		if a.state == firing {
			out = e.resolve(out, a, now, events.ReasonRemoved)
		}
		delete(e.alerts, k)
	}
	for k := range e.cooldowns {
		if _, ok := keep[k.rule]; !ok {
			delete(e.cooldowns, k)
		}
	}
	e.set = set
	return out
}

// RestoreOutcome says what Restore made of a stored incident.
type RestoreOutcome int

const (
	// Restored: the incident is open again.
	Restored RestoreOutcome = iota
	// RuleGone: its rule is gone or changed; the caller ends the incident.
	RuleGone
	// AlreadyFiring: this run has fired the rule for the same subject
	// meanwhile (the store was out of reach at first); the caller ends the
	// stored incident, superseded by the live one.
	AlreadyFiring
)

// Restore reopens an incident a previous run of the engine left open. Its
// rule is found in the set by fingerprint. The alert is firing and is
// judged again once its nodes are observed and warmed up.
func (e *Evaluator) Restore(fingerprint, subject string, id string, since time.Time, nodes []snapshot.NodeKey) RestoreOutcome {
	var r *Rule
	for _, c := range e.set.Rules {
		if c.Fingerprint == fingerprint {
			r = c
			break
		}
	}
	if r == nil {
		return RuleGone
	}
	key := alertKey{rule: fingerprint}
	switch r.Scope {
	case ScopeNode:
		if len(nodes) != 1 {
			return RuleGone
		}
		key.node = nodes[0]
	case ScopeGroup:
		key.group = subject
	}
	if a, ok := e.alerts[key]; ok && a.state == firing {
		return AlreadyFiring
	}
	inc := &Incident{ID: id, Rule: r, Subject: subject, Since: since, Nodes: nodes}
	e.alerts[key] = &alert{rule: r, key: key, state: firing, activeAt: since, incident: inc, seen: e.tick}
	return Restored
}

// DropPending makes every pending alert start over, as after a spell of
// blindness: a condition not seen to hold throughout its `for` must not
// fire on the strength of what was seen before.
func (e *Evaluator) DropPending() {
	for k, a := range e.alerts {
		if a.state == pending {
			delete(e.alerts, k)
		}
	}
}

// Active returns the open incidents, for status pages.
func (e *Evaluator) Active() []*Incident {
	var out []*Incident
	for _, a := range e.alerts {
		if a.state == firing {
			out = append(out, a.incident)
		}
	}
	return out
}

// Eval evaluates every rule against st at time now and returns what to emit.
// The returned slice is reused by the next call.
func (e *Evaluator) Eval(now time.Time, st *snapshot.State) []Transition {
	e.tick++
	e.out = e.out[:0]
	// Nodes that left end their part first, so what remains is judged on
	// the nodes still there.
	e.leave(now, st.Left)
	e.prepare(st)
	for _, r := range e.set.Rules {
		switch r.Scope {
		case ScopeNode:
			e.evalNodes(now, st, r)
		case ScopeGroup:
			e.evalGroups(now, st, r)
		case ScopeSystem:
			e.evalSystem(now, st, r)
		}
	}
	e.sweep(now, st)
	for k, until := range e.cooldowns {
		if e.held(now, until, 0) {
			delete(e.cooldowns, k)
		}
	}
	return e.out
}

func (e *Evaluator) prepare(st *snapshot.State) {
	if cap(e.claims) < len(st.Nodes) {
		e.claims = make([]int8, len(st.Nodes))
	}
	e.claims = e.claims[:len(st.Nodes)]
	clear(e.claims)
	if cap(e.sysRank) < len(st.Nodes) {
		e.sysRank = make([]int8, len(st.Nodes))
		e.sysFiring = make([]bool, len(st.Nodes))
	}
	e.sysRank, e.sysFiring = e.sysRank[:len(st.Nodes)], e.sysFiring[:len(st.Nodes)]
	clear(e.sysRank)
	clear(e.sysFiring)
	e.st, e.indexBuilt = st, false
	if cap(e.groupOf) < len(st.Nodes) {
		e.groupOf = make([]*snapshot.Group, len(st.Nodes))
	}
	e.groupOf = e.groupOf[:len(st.Nodes)]
	for i := range st.Nodes {
		e.groupOf[i] = st.GroupOf(&st.Nodes[i])
	}
	if e.withAlerts == nil {
		e.withAlerts = map[string]bool{}
	}
	clear(e.withAlerts)
	for k := range e.alerts {
		e.withAlerts[k.rule] = true
	}
	for g, idx := range e.members {
		e.members[g] = idx[:0]
	}
	for i := range st.Nodes {
		if g := st.Nodes[i].Group; g != "" {
			e.members[g] = append(e.members[g], i)
		}
	}
	for g, idx := range e.members {
		if len(idx) == 0 {
			delete(e.members, g)
		}
	}
}

func (e *Evaluator) evalNodes(now time.Time, st *snapshot.State, r *Rule) {
	lookup := e.withAlerts[r.Fingerprint]
	env := &e.nodeEnv
	env.System = &st.System
	for i := range st.Nodes {
		n := &st.Nodes[i]
		key := alertKey{rule: r.Fingerprint, node: n.Key}
		if n.Warming {
			e.freeze(key, []int{i})
			continue
		}
		env.Node, env.Group = n, e.groupOf[i]
		a, when, ok := e.match(r, key, env, lookup)
		if a == nil {
			continue
		}
		if !ok {
			e.claim(a, i)
			continue
		}
		rank := levelRank(r.Level)
		if a.state == firing && e.taken(i, rank) {
			// A rule that outranks this one now holds the node.
			e.out = e.resolve(e.out, a, now, events.ReasonSuperseded)
			delete(e.alerts, a.key)
			continue
		}
		nodes := func() []snapshot.NodeKey { return []snapshot.NodeKey{n.Key} }
		if e.step(now, a, when, env, e.occupied(i, rank), nodes) {
			e.claim(a, i)
		}
	}
}

func (e *Evaluator) evalGroups(now time.Time, st *snapshot.State, r *Rule) {
	lookup := e.withAlerts[r.Fingerprint]
	env := &e.grpEnv
	env.System = &st.System
	for gi := range st.Groups {
		g := &st.Groups[gi]
		idx := e.members[g.Name]
		key := alertKey{rule: r.Fingerprint, group: g.Name}
		if anyWarming(st, idx) {
			e.freeze(key, idx)
			continue
		}
		env.Group = g
		a, when, ok := e.match(r, key, env, lookup)
		if a == nil {
			continue
		}
		if ok && a.state == firing {
			e.supersede(a, now)
			if a.incident == nil {
				continue
			}
		}
		rank := levelRank(r.Level)
		nodes := func() []snapshot.NodeKey { return e.unclaimed(st, idx, rank) }
		if !ok || e.step(now, a, when, env, e.allOccupied(idx, rank), nodes) {
			e.claimFor(a, idx)
		}
	}
}

func (e *Evaluator) evalSystem(now time.Time, st *snapshot.State, r *Rule) {
	lookup := e.withAlerts[r.Fingerprint]
	env := &e.sysEnv
	env.System = &st.System
	key := alertKey{rule: r.Fingerprint}
	var idx []int
	warming := 0
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Lagging || n.Stalled {
			idx = append(idx, i)
		}
		if n.Warming {
			warming++
		}
	}
	if warming > 0 && 2*warming >= len(st.Nodes) {
		// Most of the system cannot be judged yet.
		e.freeze(key, idx)
		return
	}
	a, when, ok := e.match(r, key, env, lookup)
	if a == nil {
		return
	}
	if !ok {
		e.claimFor(a, idx)
		return
	}
	if a.state == firing {
		e.supersede(a, now)
		if a.incident == nil {
			return
		}
	}
	// A system incident takes the nodes no node or group incident holds
	// (a dead node is not the overload's), and is blocked only when they
	// hold every one.
	nodes := func() []snapshot.NodeKey { return e.unclaimed(st, idx, 0) }
	blocked := len(idx) > 0 && e.allOccupied(idx, 0)
	if e.step(now, a, when, env, blocked, nodes) {
		e.claimFor(a, idx)
	}
}

// freeze keeps a firing alert as it is, holding its nodes, while its
// subject cannot be judged (a node warming up after a gap or a failover);
// a pending alert is left unseen, so it starts over. A node alert's node
// is idx[0]; a group or system alert holds its incident's nodes.
func (e *Evaluator) freeze(key alertKey, idx []int) {
	a := e.alerts[key]
	if a == nil || a.state != firing {
		return
	}
	a.seen = e.tick
	if key.node != (snapshot.NodeKey{}) {
		e.claimAll(a, idx)
		return
	}
	e.claimFor(a, idx)
}

// claimFor claims what a group or system alert holds: while pending, the
// subject's nodes (idx), which no lower rule may take meanwhile; once
// firing, exactly its incident's nodes, wherever they are now. A node that
// joined the group since is free for other rules, and one that moved away
// is still held.
func (e *Evaluator) claimFor(a *alert, idx []int) {
	if a.state != firing || a.incident == nil {
		e.claimAll(a, idx)
		return
	}
	for _, k := range a.incident.Nodes {
		if i, ok := e.nodeIndex(k); ok {
			e.claim(a, i)
		}
	}
	if a.rule.Scope == ScopeSystem {
		// It also holds the nodes that share its condition now (those that
		// fell behind after it fired) against rules of its level, without
		// making them its own: an overload is one event, however it spreads.
		e.claimAll(a, idx)
	}
}

func (e *Evaluator) nodeIndex(k snapshot.NodeKey) (int, bool) {
	if !e.indexBuilt {
		if e.index == nil {
			e.index = make(map[snapshot.NodeKey]int, len(e.st.Nodes))
		}
		clear(e.index)
		for i := range e.st.Nodes {
			e.index[e.st.Nodes[i].Key] = i
		}
		e.indexBuilt = true
	}
	i, ok := e.index[k]
	return i, ok
}

// supersede ends the part of a firing group incident on nodes that a rule
// outranking it now holds, so each node carries one down; a system
// incident ends once every one of its nodes still here is held by others.
func (e *Evaluator) supersede(a *alert, now time.Time) {
	inc := a.incident
	var taken map[snapshot.NodeKey]bool
	present := 0
	for _, k := range inc.Nodes {
		i, ok := e.nodeIndex(k)
		if !ok {
			continue
		}
		present++
		if e.taken(i, levelRank(inc.Rule.Level)) {
			if taken == nil {
				taken = map[snapshot.NodeKey]bool{}
			}
			taken[k] = true
		}
	}
	if len(taken) == 0 {
		return
	}
	if inc.Rule.Emit == events.TypeSystemDown {
		if len(taken) < present {
			return
		}
		e.out = e.resolve(e.out, a, now, events.ReasonSuperseded)
		delete(e.alerts, a.key)
		return
	}
	kept := make([]snapshot.NodeKey, 0, len(inc.Nodes))
	for _, k := range inc.Nodes {
		if taken[k] {
			e.out = append(e.out, Transition{Kind: Resolve, Incident: inc, Node: k, Reason: events.ReasonSuperseded, At: now})
		} else {
			kept = append(kept, k)
		}
	}
	inc.Nodes = kept
	if len(kept) == 0 {
		e.cooldowns[a.key] = now.Add(inc.Rule.Cooldown)
		a.incident = nil
		delete(e.alerts, a.key)
	}
}

func anyWarming(st *snapshot.State, idx []int) bool {
	for _, i := range idx {
		if st.Nodes[i].Warming {
			return true
		}
	}
	return false
}

// match runs r's condition for one subject and returns the subject's alert,
// made when the condition first holds; nil when there is nothing to track.
// ok is false when the expression failed: the alert then keeps its state.
// match evaluates r for key. lookup says whether r had any alert at the
// tick's start (withAlerts): an alert made since is for another subject,
// so without one there is none for key to find.
func (e *Evaluator) match(r *Rule, key alertKey, env any, lookup bool) (a *alert, when, ok bool) {
	if lookup {
		a = e.alerts[key]
	}
	when, err := r.Match(&e.m, env)
	if err != nil {
		e.onError(r, key.subject(), err)
		if a != nil {
			a.seen = e.tick
		}
		return a, false, false
	}
	if a == nil {
		if !when {
			return nil, false, true
		}
		a = &alert{rule: r, key: key}
		e.alerts[key] = a
	}
	a.seen = e.tick
	return a, when, true
}

// step advances one alert. blocked means a rule that outranks it holds every
// node it would hold. It reports whether the alert is still active (pending
// or firing) and so claims its nodes.
func (e *Evaluator) step(now time.Time, a *alert, when bool, env any, blocked bool, nodes func() []snapshot.NodeKey) bool {
	r := a.rule
	switch a.state {
	case 0, pending:
		if !when && !a.owed {
			delete(e.alerts, a.key)
			return false
		}
		if a.state == 0 {
			a.state, a.activeAt = pending, now
		}
		if !a.owed && !e.held(now, a.activeAt, r.For) {
			return true
		}
		if until, ok := e.cooldowns[a.key]; ok && !e.held(now, until, 0) {
			a.owed = true
			return true
		}
		if blocked {
			// Another incident holds the subject now: whatever was owed
			// is its to report.
			if !when {
				delete(e.alerts, a.key)
				return false
			}
			return true
		}
		keys := nodes()
		if len(keys) == 0 && r.Scope != ScopeSystem {
			return true
		}
		a.state = firing
		a.owed = false
		a.clearedAt = time.Time{}
		a.incident = &Incident{ID: e.newID(), Rule: r, Subject: a.key.subject(), Since: now, Nodes: keys}
		e.out = e.fire(e.out, a, now)
		return true
	case firing:
		cleared, err := r.Cleared(&e.m, env, when)
		if err != nil {
			e.onError(r, a.key.subject(), err)
			return true
		}
		if !cleared {
			a.clearedAt = time.Time{}
			return true
		}
		if a.clearedAt.IsZero() {
			a.clearedAt = now
		}
		if !e.held(now, a.clearedAt, r.KeepFiringFor) {
			return true
		}
		e.out = e.resolve(e.out, a, now, events.ReasonCleared)
		delete(e.alerts, a.key)
		return false
	}
	return false
}

func (e *Evaluator) fire(out []Transition, a *alert, now time.Time) []Transition {
	inc := a.incident
	if inc.Rule.Emit == events.TypeSystemDown {
		return append(out, Transition{Kind: Fire, Incident: inc, At: now})
	}
	for _, k := range inc.Nodes {
		out = append(out, Transition{Kind: Fire, Incident: inc, Node: k, At: now})
	}
	return out
}

func (e *Evaluator) resolve(out []Transition, a *alert, now time.Time, reason string) []Transition {
	inc := a.incident
	if inc == nil {
		return out
	}
	e.cooldowns[a.key] = now.Add(inc.Rule.Cooldown)
	a.incident = nil
	if inc.Rule.Emit == events.TypeSystemDown {
		return append(out, Transition{Kind: Resolve, Incident: inc, Reason: reason, At: now})
	}
	for _, k := range inc.Nodes {
		out = append(out, Transition{Kind: Resolve, Incident: inc, Node: k, Reason: reason, At: now})
	}
	return out
}

// sweep handles alerts not evaluated this tick: their subject is unobserved
// or gone. A pending alert starts over (its condition was not seen to hold
// throughout); a firing one is frozen as it is, unless its group is gone
// while its nodes are all still there.
func (e *Evaluator) sweep(now time.Time, st *snapshot.State) {
	var judged map[snapshot.NodeKey]bool
	for key, a := range e.alerts {
		if a.seen == e.tick {
			continue
		}
		if a.state == pending {
			delete(e.alerts, key)
			continue
		}
		// A firing group incident whose group is gone while every node it
		// holds is still observed and judged: the nodes were regrouped, and
		// the condition behind it no longer stands.
		if key.group == "" || a.incident == nil {
			continue
		}
		if judged == nil {
			judged = make(map[snapshot.NodeKey]bool, len(st.Nodes))
			for i := range st.Nodes {
				if !st.Nodes[i].Warming {
					judged[st.Nodes[i].Key] = true
				}
			}
		}
		all := true
		for _, k := range a.incident.Nodes {
			all = all && judged[k]
		}
		if all {
			e.out = e.resolve(e.out, a, now, events.ReasonCleared)
			delete(e.alerts, key)
		}
	}
}

// Leave ends the part that nodes which left (consumer or stream deleted)
// play in open incidents, without evaluating anything else: for ticks where
// the engine holds incidents steady.
func (e *Evaluator) Leave(now time.Time, left []snapshot.NodeKey) []Transition {
	e.out = e.out[:0]
	e.leave(now, left)
	return e.out
}

func (e *Evaluator) leave(now time.Time, gone []snapshot.NodeKey) {
	if len(gone) == 0 {
		return
	}
	left := make(map[snapshot.NodeKey]bool, len(gone))
	for _, k := range gone {
		left[k] = true
	}
	for key, a := range e.alerts {
		inc := a.incident
		if inc == nil {
			continue
		}
		kept := make([]snapshot.NodeKey, 0, len(inc.Nodes))
		for _, k := range inc.Nodes {
			if !left[k] {
				kept = append(kept, k)
			} else if inc.Rule.Emit != events.TypeSystemDown {
				e.out = append(e.out, Transition{Kind: Resolve, Incident: inc, Node: k, Reason: events.ReasonLeft, At: now})
			}
		}
		if len(kept) == len(inc.Nodes) {
			continue
		}
		inc.Nodes = kept
		if len(kept) == 0 && inc.Rule.Emit != events.TypeSystemDown {
			// A node that left will not fire again; its group might.
			if key.node == (snapshot.NodeKey{}) {
				e.cooldowns[key] = now.Add(inc.Rule.Cooldown)
			}
			delete(e.alerts, key)
		}
	}
	// Nor do cooldowns outlive the nodes they are for: with consumers that
	// come and go they would pile up for as long as the cooldown lasts.
	for k := range e.cooldowns {
		if left[k.node] {
			delete(e.cooldowns, k)
		}
	}
}

func (e *Evaluator) claim(a *alert, i int) {
	if a.rule.Scope == ScopeSystem {
		e.sysRank[i] = max(e.sysRank[i], levelRank(a.rule.Level))
		e.sysFiring[i] = e.sysFiring[i] || a.state == firing
		return
	}
	if e.claims[i] != 0 {
		return
	}
	e.claims[i] = 1
	if a.state == firing {
		e.claims[i] = 2
	}
}

func (e *Evaluator) claimAll(a *alert, idx []int) {
	for _, i := range idx {
		e.claim(a, i)
	}
}

// occupied reports whether node i is held against a rule of level rank:
// by a node or group alert that outranks it (pending or firing), or by a
// system alert of at least its level. rank 0 asks about node and group
// alerts alone, as a system rule does.
func (e *Evaluator) occupied(i int, rank int8) bool {
	return e.claims[i] != 0 || (rank > 0 && e.sysRank[i] >= rank)
}

// taken is occupied by a firing incident: one that supersedes an incident
// of level rank already open on the node.
func (e *Evaluator) taken(i int, rank int8) bool {
	return e.claims[i] == 2 || (rank > 0 && e.sysFiring[i] && e.sysRank[i] >= rank)
}

func (e *Evaluator) unclaimed(st *snapshot.State, idx []int, rank int8) []snapshot.NodeKey {
	keys := make([]snapshot.NodeKey, 0, len(idx))
	for _, i := range idx {
		if !e.occupied(i, rank) {
			keys = append(keys, st.Nodes[i].Key)
		}
	}
	return keys
}

func (e *Evaluator) allOccupied(idx []int, rank int8) bool {
	for _, i := range idx {
		if !e.occupied(i, rank) {
			return false
		}
	}
	return len(idx) > 0
}
