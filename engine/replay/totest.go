package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/record"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/ruletest"
	"github.com/happen-dev/happen/sdk/events"
)

// TestOptions says how ToTest writes a rules test.
type TestOptions struct {
	// Path is where the test file will be written: a relative ruleset path
	// in Rules is relative to its folder, as `happen rules test` reads it.
	Path string
	// Rules is the test's rules entry: ruletest.Builtin, or a ruleset file
	// or folder as the test file names it.
	Rules string
	// Set is those rules, loaded: the recording is replayed through them
	// to compare with what the test emits.
	Set *rules.Set
	// Name is the test's name; default: from the recording.
	Name string
	// Recording names the recording in the file's comment.
	Recording string
}

// Conversion is a recording made into a rules test.
type Conversion struct {
	YAML  []byte
	Ticks int
	Nodes int
	// Expected is what the test emits, and expects: it passes as written
	// and freezes today's behaviour.
	Expected []ruletest.Event
	// Replayed is what the replay of the recording itself emits.
	Replayed []Event
	// Differences name the events that one of the two has and the other
	// not: the test is tick-uniform and models less than a recording holds
	// (see Notes), so the two may part.
	Differences []string
	// Notes say what of the recording the test cannot carry.
	Notes []string
}

// maxTicks is the most ticks a rules test runs (ruletest's own bound).
const maxTicks = 100_000

// frame is what one tick of the test is made from.
type frame struct {
	snap  *flow.Snapshot // nil: blind
	at    time.Time
	blind bool
}

// nodeTrack is one node across the test's ticks.
type nodeTrack struct {
	key         flow.NodeKey
	id, group   string
	ids, groups map[string]bool
	ackWait     time.Duration
	first, last int       // ticks it is listed in
	values      []*sample // per tick; nil: not observed
	unobserved  []bool    // per tick: listed but unread
	leaders     map[string]bool
	lastLeader  string
	failovers   int
	created     time.Time
	recreated   int
	push, pause bool
	other       bool      // redeliveries or advisories, which the test cannot carry
	lastAck     time.Time // the server's LastAck at its last observed sample
}

type sample struct {
	pending, delivered, ackPending, acked, waiting, ackFloor uint64
}

// ToTest converts the recording src (whose first run's header is hdr) into
// a rules test file: per-tick series of every stream and node, in
// promtool's notation, and the events the test itself emits as its expect
// list. The test is checked to pass before it is returned.
func ToTest(src Source, hdr record.Header, opts TestOptions) (*Conversion, error) {
	if opts.Set == nil || opts.Rules == "" {
		return nil, errors.New("to test: no rules given")
	}
	iv := hdr.Interval
	if iv <= 0 {
		return nil, fmt.Errorf("to test: the recording's interval %v is not positive", iv)
	}
	conv := &Conversion{}
	var entries []record.Entry
	var frames []frame
	runs := 1
	for {
		e, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch e.Kind {
		case record.Tick:
			s := e.Snapshot
			frames = append(frames, frame{snap: &s, at: e.At})
		case record.Blind:
			frames = append(frames, frame{at: e.At, blind: true})
		case record.Run:
			if e.Header.Interval != iv {
				return nil, fmt.Errorf("%s: the engine was restarted at interval %v, the recording began at %v: a test has one interval", e.Pos, e.Header.Interval, iv)
			}
			runs++
		case record.Dropped:
			conv.Notes = append(conv.Notes, fmt.Sprintf("%s: the recorder dropped %d ticks; the test carries the tick before on", e.Pos, e.Dropped))
		}
		entries = append(entries, e)
	}
	if len(frames) == 0 {
		return nil, errors.New("to test: the recording holds no tick")
	}
	if runs > 1 {
		conv.Notes = append(conv.Notes, fmt.Sprintf("the recording holds %d engine runs; the test runs them as one, without the restarts", runs))
	}

	ticks, notes, err := lay(frames, iv)
	if err != nil {
		return nil, err
	}
	conv.Notes = append(conv.Notes, notes...)
	conv.Ticks = len(ticks)
	streams, nodes, notes := tracks(ticks)
	conv.Notes = append(conv.Notes, notes...)
	if len(nodes) == 0 {
		return nil, errors.New("to test: the recording holds no consumer: a test needs nodes")
	}
	conv.Nodes = len(nodes)

	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("recording of %s from %s", orDash(hdr.Instance), frames[0].at.UTC().Format(timeFormat))
	}
	body := testYAML(hdr, opts, name, len(ticks), iv, streams, nodes)

	// What the test emits is what it expects.
	got, err := runTest(opts.Path, body)
	if err != nil {
		return nil, err
	}
	if len(got.RuleErrors) > 0 {
		conv.Notes = append(conv.Notes, got.RuleErrors...)
	}
	full := append(body, expectYAML(got.Events, nodes)...)
	check, err := runTest(opts.Path, full)
	if err != nil {
		return nil, err
	}
	if !check.Passed() {
		return nil, fmt.Errorf("to test: the test written does not pass as written:\n%s", check.Report())
	}
	conv.YAML, conv.Expected = full, got.Events

	rp, err := Run(&sliceSource{entries: entries}, hdr, opts.Set)
	if err != nil {
		return nil, err
	}
	conv.Replayed = rp.Results[0].Events
	conv.Differences = compare(conv.Expected, conv.Replayed, frames[0].at, iv)
	return conv, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lay puts the frames on the test's tick grid: tick i is at i intervals
// from the first frame. Two frames on one tick: the later stands. A tick
// no frame landed on (the engine skipped a beat) carries the one before.
func lay(frames []frame, iv time.Duration) ([]frame, []string, error) {
	t0 := frames[0].at
	last := slot(frames[len(frames)-1].at.Sub(t0), iv)
	if last+1 > maxTicks {
		return nil, nil, fmt.Errorf("to test: the recording spans %d ticks, more than a test runs (%d)", last+1, maxTicks)
	}
	out := make([]frame, last+1)
	filled := make([]bool, last+1)
	merged, carried := 0, 0
	for _, f := range frames {
		i := max(0, min(last, slot(f.at.Sub(t0), iv)))
		if filled[i] {
			merged++
		}
		out[i], filled[i] = f, true
	}
	for i := range out {
		if !filled[i] {
			out[i] = out[i-1]
			carried++
		}
	}
	var notes []string
	if merged > 0 {
		notes = append(notes, fmt.Sprintf("%d ticks came less than an interval after the one before; the test keeps the later", merged))
	}
	if carried > 0 {
		notes = append(notes, fmt.Sprintf("%d ticks were skipped by the engine (a slow sample); the test repeats the tick before", carried))
	}
	return out, notes, nil
}

func slot(d, iv time.Duration) int {
	return int((d + iv/2) / iv)
}

// streamTrack is one stream across the test's ticks.
type streamTrack struct {
	name        string
	first, last int
	values      []ruletest.Sample
}

// tracks follows every stream and node across the ticks.
func tracks(ticks []frame) ([]*streamTrack, []*nodeTrack, []string) {
	n := len(ticks)
	streams := map[string]*streamTrack{}
	nodes := map[flow.NodeKey]*nodeTrack{}
	var present []flow.NodeKey // listed at the last tick that was not blind
	var presentStreams []string
	node := func(k flow.NodeKey, i int) *nodeTrack {
		nt := nodes[k]
		if nt == nil {
			nt = &nodeTrack{key: k, first: i, values: make([]*sample, n), unobserved: make([]bool, n),
				ids: map[string]bool{}, groups: map[string]bool{}, leaders: map[string]bool{}}
			nodes[k] = nt
		}
		nt.last = i
		return nt
	}
	for i, f := range ticks {
		if f.blind {
			// Blind: nothing is read, nothing has left.
			for _, k := range present {
				node(k, i).unobserved[i] = true
			}
			for _, name := range presentStreams {
				streams[name].last = i
			}
			continue
		}
		s := f.snap
		present, presentStreams = present[:0], presentStreams[:0]
		for _, st := range s.Streams {
			t := streams[st.Name]
			if t == nil {
				t = &streamTrack{name: st.Name, first: i, values: make([]ruletest.Sample, n)}
				for j := range t.values {
					t.values[j].Missing = true
				}
				streams[st.Name] = t
			}
			t.last = i
			t.values[i] = ruletest.Sample{Value: st.LastSeq}
			presentStreams = append(presentStreams, st.Name)
		}
		listed := map[flow.NodeKey]bool{}
		for ci := range s.Consumers {
			c := &s.Consumers[ci]
			if listed[c.Key] {
				continue // listed twice: the first reading counts, as in the tracker
			}
			listed[c.Key] = true
			nt := node(c.Key, i)
			nt.observe(i, c)
			present = append(present, c.Key)
		}
		for _, k := range s.Unobserved {
			if !listed[k] {
				listed[k] = true
				node(k, i).unobserved[i] = true
				present = append(present, k)
			}
		}
		// A stream whose consumers could not be listed: every node known
		// on it is unread, not gone.
		for _, name := range s.UnobservedStreams {
			for k, nt := range nodes {
				if k.Stream == name && !listed[k] && nt.last == i-1 {
					listed[k] = true
					nt.last = i
					nt.unobserved[i] = true
					present = append(present, k)
				}
			}
		}
	}

	var notes []string
	var outStreams []*streamTrack
	for _, t := range streams {
		t.values = t.values[:t.last+1]
		outStreams = append(outStreams, t)
	}
	slices.SortFunc(outStreams, func(a, b *streamTrack) int { return strings.Compare(a.name, b.name) })

	var all []*nodeTrack
	for _, nt := range nodes {
		all = append(all, nt)
	}
	slices.SortFunc(all, func(a, b *nodeTrack) int {
		if c := strings.Compare(a.key.Stream, b.key.Stream); c != 0 {
			return c
		}
		return strings.Compare(a.key.Consumer, b.key.Consumer)
	})
	// The test names a node by its consumer, and tells nodes apart by id.
	names, ids := map[string]flow.NodeKey{}, map[string]flow.NodeKey{}
	var out []*nodeTrack
	var push, paused, failover, recreated, other []string
	for _, nt := range all {
		if nt.id == "" {
			nt.id = nt.key.Consumer
		}
		if k, dup := names[nt.key.Consumer]; dup {
			notes = append(notes, fmt.Sprintf("node %s left out: a test names nodes by consumer, and %s has that name too", nt.key, k))
			continue
		}
		if k, dup := ids[nt.id]; dup {
			notes = append(notes, fmt.Sprintf("node %s left out: its id %s is %s's too", nt.key, nt.id, k))
			continue
		}
		names[nt.key.Consumer], ids[nt.id] = nt.key, nt.key
		if len(nt.ids) > 1 || len(nt.groups) > 1 {
			notes = append(notes, fmt.Sprintf("node %s changed its id or group during the recording; the test gives it the last (id %s, group %q)", nt.key, nt.id, nt.group))
		}
		if nt.push {
			push = append(push, nt.key.String())
		}
		if nt.pause {
			paused = append(paused, nt.key.String())
		}
		if nt.failovers > 0 {
			failover = append(failover, nt.key.String())
		}
		if nt.recreated > 0 {
			recreated = append(recreated, nt.key.String())
		}
		if nt.other {
			other = append(other, nt.key.String())
		}
		out = append(out, nt)
	}
	some := func(what string, keys []string) {
		if len(keys) > 0 {
			notes = append(notes, fmt.Sprintf("%s: %s", what, strings.Join(keys, ", ")))
		}
	}
	some("push consumers, which the test models as pull consumers (node.push is false there)", push)
	some("paused consumers, which the test cannot pause", paused)
	some("consumer leader changes (failovers), which the test cannot make", failover)
	some("consumers recreated under the same name, which the test sees only where delivered falls", recreated)
	some("redeliveries, naks or advisories, which the test cannot carry", other)
	return outStreams, out, notes
}

// observe takes a node's sample at tick i. acked counts the deliveries
// acknowledged as the server stamped them: a test stamps the server's
// LastAck at a tick whenever acked rises, so acked rises exactly when the
// recorded LastAck moved.
func (nt *nodeTrack) observe(i int, c *flow.ConsumerSample) {
	nt.id, nt.group = c.NodeID, c.Group
	nt.ids[c.NodeID], nt.groups[c.Group] = true, true
	if c.AckWait > 0 {
		nt.ackWait = c.AckWait
	}
	if c.Leader != "" {
		if nt.lastLeader != "" && c.Leader != nt.lastLeader {
			nt.failovers++
		}
		nt.lastLeader = c.Leader
	}
	if !nt.created.IsZero() && !c.Created.IsZero() && !c.Created.Equal(nt.created) {
		nt.recreated++
	}
	if !c.Created.IsZero() {
		nt.created = c.Created
	}
	nt.push = nt.push || c.Push
	nt.pause = nt.pause || c.Paused
	nt.other = nt.other || c.NumRedelivered > 0 || c.Naks > 0 || c.MaxDeliveries > 0 || c.Terminated > 0

	s := &sample{
		pending:    c.NumPending,
		delivered:  c.Delivered,
		ackPending: min(c.NumAckPending, c.Delivered),
		waiting:    c.NumWaiting,
		ackFloor:   min(c.AckFloor, c.Delivered),
	}
	// A bound push consumer's client is there as a pull client with a
	// request open is: the tracker reads either as present.
	if c.PushBound && s.waiting == 0 {
		s.waiting = 1
	}
	est := s.delivered - s.ackPending
	prev, prevAck := nt.previous(i)
	stamped := !c.LastAck.IsZero() || (!c.LastDelivery.IsZero() && !c.AckNone)
	switch {
	case prev == nil:
		if !c.LastAck.IsZero() || !stamped {
			s.acked = est
		}
	case c.Delivered < prev.delivered: // recreated: sequences start again
		s.acked = est
	case !stamped:
		s.acked = max(prev.acked, est)
	case c.LastAck.After(prevAck):
		s.acked = max(prev.acked+1, est)
	default:
		s.acked = prev.acked
	}
	nt.values[i] = s
	nt.lastAck = c.LastAck
}

// previous is the node's last observed sample before tick i and the
// LastAck read with it.
func (nt *nodeTrack) previous(i int) (*sample, time.Time) {
	for j := i - 1; j >= nt.first; j-- {
		if nt.values[j] != nil {
			return nt.values[j], nt.lastAck
		}
	}
	return nil, time.Time{}
}

// series is one of the node's series: a value per tick from 0 to its last,
// `_` where it was not observed.
func (nt *nodeTrack) series(get func(*sample) uint64) []ruletest.Sample {
	out := make([]ruletest.Sample, nt.last+1)
	for i := range out {
		if s := nt.values[i]; s != nil {
			out[i] = ruletest.Sample{Value: get(s)}
		} else {
			out[i] = ruletest.Sample{Missing: true}
		}
	}
	return out
}

func testYAML(hdr record.Header, opts TestOptions, name string, ticks int, iv time.Duration, streams []*streamTrack, nodes []*nodeTrack) []byte {
	var b strings.Builder
	src := opts.Recording
	if src == "" {
		src = "a recording"
	}
	fmt.Fprintf(&b, "# Made by `happen replay --to-test` from %s\n", filepath.Base(src))
	fmt.Fprintf(&b, "# (engine instance %s, recording started %s, %d ticks at %s).\n", orDash(hdr.Instance), hdr.Start.UTC().Format(timeFormat), ticks, iv)
	b.WriteString(`#
# The series are the recorded samples, one value per tick in promtool's
# notation; _ is a tick at which the node could not be read. A series a
# node does not give has its default (see docs/rule-tests.md); where acked
# is given it rises exactly where the server's last-ack time moved. The
# expect list is what this test emits: it freezes today's behaviour. Widen
# an at into a window (10s..15s) where a retuned detector may move an event.
`)
	fmt.Fprintf(&b, "rules: [%s]\n", yamlString(opts.Rules))
	fmt.Fprintf(&b, "interval: %s\n", iv)
	b.WriteString("tests:\n")
	fmt.Fprintf(&b, "  - name: %s\n", yamlString(name))
	fmt.Fprintf(&b, "    duration: %s\n", time.Duration(ticks-1)*iv)
	if len(streams) > 0 {
		b.WriteString("    streams:\n")
		for _, s := range streams {
			fmt.Fprintf(&b, "      %s: %s\n", yamlString(s.name), Compress(s.values))
		}
	}
	b.WriteString("    nodes:\n")
	for _, nt := range nodes {
		fmt.Fprintf(&b, "      %s:\n", yamlString(nt.key.Consumer))
		if nt.id != nt.key.Consumer {
			fmt.Fprintf(&b, "        id: %s\n", yamlString(nt.id))
		}
		if nt.group != "" {
			fmt.Fprintf(&b, "        group: %s\n", yamlString(nt.group))
		}
		fmt.Fprintf(&b, "        stream: %s\n", yamlString(nt.key.Stream))
		if nt.ackWait > 0 {
			fmt.Fprintf(&b, "        ackWait: %s\n", nt.ackWait)
		}
		for _, s := range nt.given() {
			fmt.Fprintf(&b, "        %-13s %s\n", s.name+":", Compress(nt.series(s.get)))
		}
	}
	return []byte(b.String())
}

type seriesOf struct {
	name string
	get  func(*sample) uint64
}

// given is the series the test must give for the node: delivered always
// (it carries the node's _), the others where the defaults of a test
// (nothing pending, a pull open, acks as delivered and in order) would not
// say what was recorded.
func (nt *nodeTrack) given() []seriesOf {
	all := func(f func(*sample) bool) bool {
		for _, s := range nt.values {
			if s != nil && !f(s) {
				return false
			}
		}
		return true
	}
	var out []seriesOf
	if !all(func(s *sample) bool { return s.pending == 0 }) {
		out = append(out, seriesOf{"pending", func(s *sample) uint64 { return s.pending }})
	}
	out = append(out, seriesOf{"delivered", func(s *sample) uint64 { return s.delivered }})
	ackedIsDefault := all(func(s *sample) bool { return s.acked == s.delivered-s.ackPending })
	if !ackedIsDefault || !all(func(s *sample) bool { return s.ackPending == 0 }) {
		out = append(out, seriesOf{"ackPending", func(s *sample) uint64 { return s.ackPending }})
	}
	if !ackedIsDefault {
		out = append(out, seriesOf{"acked", func(s *sample) uint64 { return s.acked }})
	}
	if !all(func(s *sample) bool { return s.ackFloor == min(s.acked, s.delivered) }) {
		out = append(out, seriesOf{"ackFloor", func(s *sample) uint64 { return s.ackFloor }})
	}
	if !all(func(s *sample) bool { return s.waiting == 1 }) {
		out = append(out, seriesOf{"waitingPulls", func(s *sample) uint64 { return s.waiting }})
	}
	return out
}

// expectYAML is the expect list of the events, nodes named by consumer.
func expectYAML(evs []ruletest.Event, nodes []*nodeTrack) []byte {
	var b strings.Builder
	if len(evs) == 0 {
		b.WriteString("    # nothing is emitted: no expect list\n")
		return []byte(b.String())
	}
	byID := map[string]string{}
	for _, nt := range nodes {
		byID[nt.id] = nt.key.Consumer
	}
	name := func(id string) string {
		if n, ok := byID[id]; ok {
			return yamlString(n)
		}
		return yamlString(id)
	}
	labels := map[string]string{}
	b.WriteString("    expect:\n")
	for _, e := range evs {
		lbl, ok := labels[e.Incident]
		if !ok {
			lbl = "i" + strconv.Itoa(len(labels)+1)
			labels[e.Incident] = lbl
		}
		fmt.Fprintf(&b, "      - {at: %s, type: %s", e.At, e.Type)
		if e.Node != "" {
			fmt.Fprintf(&b, ", node: %s", name(e.Node))
		}
		fmt.Fprintf(&b, ", pattern: %s, rule: %s", yamlString(e.Pattern), yamlString(e.Rule))
		down := strings.HasSuffix(e.Type, ".down")
		if down {
			fmt.Fprintf(&b, ", level: %s", e.Level)
			if e.Type == events.TypeNodeDown && e.Group != "" {
				fmt.Fprintf(&b, ", group: %s", yamlString(e.Group))
			}
			ns := make([]string, len(e.Nodes))
			for i, id := range e.Nodes {
				ns[i] = name(id)
			}
			fmt.Fprintf(&b, ", nodes: [%s]", strings.Join(ns, ", "))
		} else {
			r := e.Reason
			if r == events.ReasonCleared {
				r = "cleared"
			}
			fmt.Fprintf(&b, ", reason: %s", r)
		}
		fmt.Fprintf(&b, ", incident: %s}\n", lbl)
	}
	return []byte(b.String())
}

// runTest parses and runs a generated test file's single test.
func runTest(path string, data []byte) (*ruletest.Result, error) {
	f, err := ruletest.Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("to test: the test written does not load:\n%s", strings.Join(ruletest.Diagnostics(err), "\n"))
	}
	res := f.Run()
	if len(res) != 1 {
		return nil, fmt.Errorf("to test: the test written holds %d tests, want 1", len(res))
	}
	return res[0], nil
}

// compare names the events only the test, or only the replay, has: matched
// by type, node, pattern, rule and level at most two intervals apart.
func compare(test []ruletest.Event, replayed []Event, t0 time.Time, iv time.Duration) []string {
	tol := DiffTolerance(iv)
	used := make([]bool, len(replayed))
	var out []string
	for _, x := range test {
		found := false
		for i, y := range replayed {
			if used[i] || y.Type != x.Type || y.Node != x.Node || y.Pattern != x.Pattern || y.Rule != x.Rule || y.Level != x.Level {
				continue
			}
			if (y.At.Sub(t0) - x.At).Abs() <= tol {
				used[i], found = true, true
				break
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("only in the test, at %s: %s", x.At, x))
		}
	}
	for i, y := range replayed {
		if !used[i] {
			out = append(out, fmt.Sprintf("only in the replay of the recording, at %s: %s", offset(y.At.Sub(t0)), y.Line(t0)))
		}
	}
	return out
}

// plain is a YAML scalar that needs no quotes and reads as a string.
var plain = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

// yamlString writes s as a YAML scalar, quoted where it must be.
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "y", "n":
		return strconv.Quote(s)
	}
	if plain.MatchString(s) {
		return s
	}
	// JSON strings are YAML double-quoted scalars.
	b, _ := json.Marshal(s)
	return string(b)
}

// sliceSource yields entries already read.
type sliceSource struct {
	entries []record.Entry
	i       int
}

func (s *sliceSource) Next() (record.Entry, error) {
	if s.i >= len(s.entries) {
		return record.Entry{}, io.EOF
	}
	s.i++
	return s.entries[s.i-1], nil
}
