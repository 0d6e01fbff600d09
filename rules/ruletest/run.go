package ruletest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
)

// base is the time of tick 0. Any fixed time would do; a fixed one keeps
// runs identical.
var base = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Event is one event the engine would have emitted, with the fields a test
// can check.
type Event struct {
	At       time.Duration // since tick 0
	Type     string
	Node     string // nodeId of node events
	Pattern  string
	Rule     string
	Level    string   // down events
	Group    string   // node.down
	Nodes    []string // affectedNodes of down events, sorted
	Reason   string   // up events; "" is cleared
	Incident string   // the correlationId, as the runner numbers incidents: #1, #2, ...
}

func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Type)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	kv("node", e.Node)
	kv("pattern", e.Pattern)
	kv("rule", e.Rule)
	kv("level", e.Level)
	kv("group", e.Group)
	if strings.HasSuffix(e.Type, ".down") {
		fmt.Fprintf(&b, " nodes=[%s]", strings.Join(e.Nodes, ", "))
	}
	kv("reason", e.Reason)
	kv("incident", e.Incident)
	return b.String()
}

func (x *Expectation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %s: %s", span(x.From, x.To), x.Type)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	kv("node", x.Node)
	kv("pattern", x.Pattern)
	kv("rule", x.Rule)
	kv("level", x.Level)
	kv("group", x.Group)
	if x.HasNodes {
		fmt.Fprintf(&b, " nodes=[%s]", strings.Join(x.Nodes, ", "))
	}
	if x.HasReason {
		r := x.Reason
		if r == "" {
			r = "cleared"
		}
		kv("reason", r)
	}
	kv("incident", x.Incident)
	return b.String()
}

func span(from, to time.Duration) string {
	if from == to {
		return from.String()
	}
	return from.String() + ".." + to.String()
}

// Result is the outcome of one test.
type Result struct {
	Test   *Test
	Events []Event // everything emitted, in order
	// Missing are expectations no event matched; Unexpected are events no
	// expectation matched.
	Missing    []*Expectation
	Unexpected []Event
	// Hints explain near misses, such as an event that matches an
	// expectation but for its incident label.
	Hints []string
	// RuleErrors are expression run-time errors: a rule that cannot be
	// evaluated neither fires nor resolves, so a test must not pass on it.
	RuleErrors []string
}

// Passed reports whether the test passed.
func (r *Result) Passed() bool {
	return len(r.Missing) == 0 && len(r.Unexpected) == 0 && len(r.RuleErrors) == 0
}

// Report is a failed test's diff, indented for printing below its name;
// "" when it passed.
func (r *Result) Report() string {
	if r.Passed() {
		return ""
	}
	var b strings.Builder
	if len(r.RuleErrors) > 0 {
		b.WriteString("  rule errors:\n")
		for _, e := range r.RuleErrors {
			fmt.Fprintf(&b, "    %s\n", e)
		}
	}
	if len(r.Missing) > 0 {
		b.WriteString("  expected, not emitted:\n")
		for _, x := range r.Missing {
			fmt.Fprintf(&b, "    %s: %s\n", x.Pos, x)
		}
	}
	if len(r.Unexpected) > 0 {
		b.WriteString("  emitted, not expected:\n")
		for _, e := range r.Unexpected {
			fmt.Fprintf(&b, "    at %s: %s\n", e.At, e)
		}
	}
	for _, h := range r.Hints {
		fmt.Fprintf(&b, "  note: %s\n", h)
	}
	b.WriteString(r.Timeline())
	return b.String()
}

// Timeline lists everything emitted, one event a line, indented for
// printing below the test's name.
func (r *Result) Timeline() string {
	var b strings.Builder
	b.WriteString("  emitted, in order:\n")
	if len(r.Events) == 0 {
		b.WriteString("    (nothing)\n")
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, "    %6s  %s\n", e.At, e)
	}
	return b.String()
}

// Run runs every test of f, each against a fresh tracker and evaluator.
func (f *File) Run() []*Result {
	out := make([]*Result, len(f.Tests))
	for i, tc := range f.Tests {
		out[i] = f.run(tc)
	}
	return out
}

func (f *File) run(tc *Test) *Result {
	res := &Result{Test: tc}
	res.Events = simulate(f.set, f.Interval, tc, func(r *rules.Rule, subject string, err error) {
		msg := fmt.Sprintf("rule %s (%s) on %q: %v", r.Name, r.Pos, subject, err)
		for _, m := range res.RuleErrors {
			if m == msg {
				return
			}
		}
		res.RuleErrors = append(res.RuleErrors, msg)
	})
	res.Missing, res.Unexpected, res.Hints = match(tc.expect, res.Events)
	return res
}

// nodeState is what the runner keeps of a node between ticks to stamp
// LastAck as the server would.
type nodeState struct {
	acked   uint64
	lastAck time.Time
}

// simulate feeds the test's ticks through a Tracker and an Evaluator
// configured as the engine configures them at this interval, and returns
// the events the engine would emit.
func simulate(set *rules.Set, interval time.Duration, tc *Test, onError func(*rules.Rule, string, error)) []Event {
	tr := flow.NewTracker(flow.ForInterval(interval))
	n := 0
	ev := rules.NewEvaluator(set,
		rules.ForInterval(interval),
		rules.WithIDs(func() string { n++; return "#" + strconv.Itoa(n) }),
		rules.OnError(onError))

	byKey := make(map[flow.NodeKey]*nodeSpec, len(tc.nodes))
	for _, ns := range tc.nodes {
		byKey[flow.NodeKey{Stream: ns.stream, Consumer: ns.name}] = ns
	}
	state := make([]nodeState, len(tc.nodes))
	streams := make([]*streamRun, len(tc.streams))
	byName := map[string]*streamRun{}
	for k, s := range tc.streams {
		streams[k] = &streamRun{spec: s}
		byName[s.name] = streams[k]
	}
	created := base.Add(-time.Hour)
	var out []Event
	for i := range tc.ticks {
		at := base.Add(time.Duration(i) * interval)
		snap := flow.Snapshot{At: at, Signals: flow.Signals{Servers: tc.hasServers}}
		for _, sv := range tc.servers {
			if since := base.Add(sv.down); !since.After(at) {
				snap.Signals.Down = append(snap.Signals.Down, flow.ServerDown{
					Name: sv.name, Since: since, LastHeard: base.Add(sv.lastHeard), Announced: sv.announced,
				})
			}
		}
		for _, r := range streams {
			r.note(i, at)
		}
		for k, ns := range tc.nodes {
			key := flow.NodeKey{Stream: ns.stream, Consumer: ns.name}
			if i >= ns.length {
				continue // left: absent from the listing
			}
			if ns.missing(i) {
				snap.Unobserved = append(snap.Unobserved, key)
				continue
			}
			delivered := ns.value(sDelivered, i, 0)
			var acked, ackPending uint64
			switch {
			case ns.series[sAckPending] != nil:
				ackPending = ns.value(sAckPending, i, 0)
				acked = ns.value(sAcked, i, delivered-ackPending)
			default:
				acked = ns.value(sAcked, i, delivered)
				ackPending = delivered - acked
			}
			s := &state[k]
			if acked > s.acked {
				s.lastAck = at
			}
			s.acked = acked
			floor := min(ns.value(sAckFloor, i, acked), delivered)
			snap.Consumers = append(snap.Consumers, flow.ConsumerSample{
				Key: key, NodeID: ns.id, Group: ns.group,
				At: at, Created: created,
				NumPending:    ns.value(sPending, i, 0),
				NumAckPending: ackPending,
				NumWaiting:    ns.value(sWaitingPulls, i, 1),
				Delivered:     delivered,
				AckFloor:      floor,
				LastAck:       s.lastAck,
				AckWait:       ns.ackWait,
				// A test's consumer reads its whole stream without gaps:
				// its sequences are the stream's.
				DeliveredStream: delivered,
				AckFloorStream:  floor,
			})
			if r := byName[ns.stream]; r != nil {
				r.floors = append(r.floors, floor)
			}
		}
		for _, r := range streams {
			if ss, ok := r.sample(i, at); ok {
				snap.Streams = append(snap.Streams, ss)
			}
		}
		// The sampler's read of each waiting node's oldest unfinished
		// message, which a test's stream always answers.
		for k := range snap.Consumers {
			c := &snap.Consumers[k]
			r := byName[c.Key.Stream]
			if r == nil || !r.present || c.NumPending+c.NumAckPending == 0 {
				continue
			}
			if seq := max(c.AckFloorStream+1, r.first); seq <= r.last {
				c.OldestSeq, c.OldestTime = seq, r.publishedAt(seq)
			}
		}
		st := tr.Update(snap)
		flow.Annotate(st, &snap.Signals, at)
		trs := ev.Eval(at, st)
		out = append(out, toEvents(time.Duration(i)*interval, trs, st, byKey)...)
	}
	return out
}

// streamRun follows one test stream through the ticks as a server would
// show it: when each of its messages was published, and which of them its
// limits, and the acks of an interest or work-queue stream, have removed.
type streamRun struct {
	spec *streamSpec
	// pub is each last sequence the stream reached and the tick time it
	// reached it, ascending: message s was published at the time of the
	// first entry at or past s. A last sequence that falls (the stream was
	// recreated) starts it over.
	pub []seqTick

	// This tick's: the ack floors of its nodes, and what it showed.
	floors      []uint64
	present     bool
	first, last uint64
}

type seqTick struct {
	seq uint64
	at  time.Time
}

// note takes the stream's last sequence at tick i, and clears the tick's
// floors.
func (r *streamRun) note(i int, at time.Time) {
	r.floors = r.floors[:0]
	vals := r.spec.values
	r.present = i < len(vals) && !vals[i].Missing
	if !r.present {
		return
	}
	last := vals[i].Value
	switch n := len(r.pub); {
	case n > 0 && last < r.pub[n-1].seq:
		r.pub = append(r.pub[:0], seqTick{last, at})
	case n == 0 || last > r.pub[n-1].seq:
		r.pub = append(r.pub, seqTick{last, at})
	}
}

// publishedAt is when message seq was published; what the stream held when
// first seen counts as published then.
func (r *streamRun) publishedAt(seq uint64) time.Time {
	k := sort.Search(len(r.pub), func(k int) bool { return r.pub[k].seq >= seq })
	return r.pub[min(k, len(r.pub)-1)].at
}

// sample is the stream at tick i, at time at, after its nodes' floors were
// noted; false if it is absent.
func (r *streamRun) sample(i int, at time.Time) (flow.StreamSample, bool) {
	if !r.present {
		return flow.StreamSample{}, false
	}
	sp := r.spec
	last := sp.values[i].Value
	first := r.derivedFirst(last, at)
	if sp.firstSeq != nil && !sp.firstSeq[i].Missing {
		first = sp.firstSeq[i].Value
	}
	msgs := uint64(0)
	if first > 0 && first <= last {
		msgs = last - first + 1
	}
	if sp.msgs != nil && !sp.msgs[i].Missing {
		msgs = sp.msgs[i].Value
	}
	r.first, r.last = first, last
	ss := flow.StreamSample{
		Name: sp.name, At: at, LastSeq: last, FirstSeq: first, Msgs: msgs,
		MaxMsgs: sp.maxMsgs, MaxAge: sp.maxAge, DiscardNew: sp.discardNew,
	}
	if last > 0 {
		ss.LastTime = r.publishedAt(last)
	}
	if msgs > 0 {
		ss.FirstTime = r.publishedAt(first)
	}
	return ss, true
}

// derivedFirst is the stream's first sequence as its server would keep it:
// past what MaxMsgs (discarding old) and MaxAge have removed, and on an
// interest or work-queue stream past what every node has acked.
func (r *streamRun) derivedFirst(last uint64, at time.Time) uint64 {
	if last == 0 {
		return 0
	}
	sp := r.spec
	first := uint64(1)
	if sp.maxMsgs > 0 && !sp.discardNew && last > uint64(sp.maxMsgs) {
		first = last - uint64(sp.maxMsgs) + 1
	}
	if sp.maxAge > 0 {
		cut := at.Add(-sp.maxAge)
		k := sort.Search(len(r.pub), func(k int) bool { return !r.pub[k].at.Before(cut) })
		switch {
		case k == len(r.pub):
			first = last + 1 // all expired
		case k > 0:
			first = max(first, r.pub[k-1].seq+1)
		}
	}
	if sp.retention != retentionLimits {
		acked := last // with no node, nothing is wanted
		for _, f := range r.floors {
			acked = min(acked, f)
		}
		first = max(first, acked+1)
	}
	return min(first, last+1)
}

// toEvents maps transitions to events as the engine's emit does.
func toEvents(at time.Duration, trs []rules.Transition, st *flow.State, byKey map[flow.NodeKey]*nodeSpec) []Event {
	if len(trs) == 0 {
		return nil
	}
	// A node that left is no longer in st: it keeps the id its test gave it.
	id := func(k flow.NodeKey) string {
		if st.Node(k) == nil {
			if ns := byKey[k]; ns != nil {
				return ns.id
			}
		}
		return st.NodeID(k)
	}
	out := make([]Event, 0, len(trs))
	for _, tr := range trs {
		inc := tr.Incident
		r := inc.Rule
		e := Event{At: at, Pattern: r.Pattern, Rule: r.Name, Incident: inc.ID}
		switch {
		case tr.Kind == rules.Fire && r.Emit == events.TypeNodeDown:
			e.Type, e.Node, e.Level, e.Nodes = events.TypeNodeDown, id(tr.Node), r.Level, st.NodeIDs(inc.Nodes)
			if n := st.Node(tr.Node); n != nil {
				e.Group = n.Group
			}
		case tr.Kind == rules.Fire:
			e.Type, e.Level, e.Nodes = events.TypeSystemDown, r.Level, st.NodeIDs(inc.Nodes)
		case r.Emit == events.TypeNodeDown:
			e.Type, e.Node, e.Reason = events.TypeNodeUp, id(tr.Node), tr.Reason
		default:
			e.Type, e.Reason = events.TypeSystemUp, tr.Reason
		}
		out = append(out, e)
	}
	// The evaluator walks some of its state in map order; within a tick,
	// a fixed order keeps timelines identical from run to run.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Incident != b.Incident {
			return incidentLess(a.Incident, b.Incident)
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Node < b.Node
	})
	return out
}

// incidentLess orders #2 before #10: the runner names incidents #1, #2...
func incidentLess(a, b string) bool {
	x, _ := strconv.Atoi(strings.TrimPrefix(a, "#"))
	y, _ := strconv.Atoi(strings.TrimPrefix(b, "#"))
	return x < y
}
