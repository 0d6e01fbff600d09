package ruletest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/internal/yamlx"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
	"gopkg.in/yaml.v3"
)

// Builtin is the word in a test file's rules list that means the ruleset
// compiled into happen.
const Builtin = "builtin"

// maxNodes bounds how many YAML nodes aliases may make the decoder visit,
// against alias bombs.
const maxNodes = 100_000

// decoder walks one test file's yaml.Node tree, collecting every fault.
type decoder struct {
	file    string
	lines   [][]rune
	diags   rules.Errors
	aliases *yamlx.Aliases // within maxNodes
}

type field struct{ key, val *yaml.Node }

// Parse decodes one test file. path names it in diagnostics and is where
// relative ruleset paths start from; data is its content.
func Parse(path string, data []byte) (*File, error) {
	d := &decoder{file: path, aliases: yamlx.NewAliases(maxNodes)}
	for _, l := range yamlx.Lines(data) {
		d.lines = append(d.lines, []rune(l))
	}
	f := &File{Path: path, Interval: time.Second}
	root := d.document(data)
	var ruleEntries []field
	if root != nil {
		ruleEntries = d.file1(root, f)
	}
	if len(d.diags) == 0 {
		// Rulesets are loaded once the file itself is sound: their faults
		// would otherwise bury the file's own.
		f.set = d.rulesets(ruleEntries)
	}
	if len(d.diags) > 0 {
		// Ruleset diagnostics stay right after the entry that named them.
		return nil, d.diags
	}
	return f, nil
}

func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input before.
		if r := recover(); r != nil {
			d.diags = append(d.diags, rules.Diagnostic{Pos: rules.Position{File: d.file, Line: 1, Col: 1}, Msg: fmt.Sprintf("yaml: malformed document: %v", r)})
			root = nil
		}
	}()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		d.diags = append(d.diags, rules.Diagnostic{Pos: rules.Position{File: d.file, Line: 1, Col: 1}, Msg: "empty file (want rules, interval and tests)"})
		return nil
	}
	if err != nil {
		// yaml.v3 names no column, and not always the line at fault.
		line, msg := yamlx.SyntaxFault(data, err)
		d.diags = append(d.diags, rules.Diagnostic{Pos: rules.Position{File: d.file, Line: line, Col: 1}, Msg: "yaml: " + msg})
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorf(&next, "a test file holds one YAML document, found a second")
	case !errors.Is(err, io.EOF):
		// A broken second document is a broken file, as for a ruleset.
		line, msg := yamlx.SyntaxFault(data, err)
		d.diags = append(d.diags, rules.Diagnostic{Pos: rules.Position{File: d.file, Line: line, Col: 1}, Msg: "yaml: " + msg})
	}
	return doc.Content[0]
}

func (d *decoder) pos(n *yaml.Node) rules.Position {
	line, col := yamlx.Pos(n)
	return rules.Position{File: d.file, Line: line, Col: col}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.diags = append(d.diags, rules.Diagnostic{Pos: d.pos(n), Msg: fmt.Sprintf(format, args...)})
}

// deref follows aliases, spending budget; nil once the budget is spent.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	n, fault := d.aliases.Deref(n)
	if fault != nil {
		d.diags = append(d.diags, rules.Diagnostic{Pos: d.pos(fault.Node), Msg: fault.Msg})
	}
	return n
}

// pairs returns a mapping's keys and values in file order, each key a
// string and once. Merge keys (<<: *anchor) are expanded, keys given
// beside them winning: nodes that differ in a field or two are written
// once that way.
func (d *decoder) pairs(n *yaml.Node, what string) []field {
	return d.merged(n, what, 0)
}

func (d *decoder) merged(n *yaml.Node, what string, depth int) []field {
	n = d.deref(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, got %s", what, yamlx.Describe(n))
		return nil
	}
	var out, merges []field
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), d.deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		switch {
		case k.Kind != yaml.ScalarNode || k.Tag == "!!null" || k.Value == "":
			d.errorf(k, "a key in %s must be a name, got %s", what, yamlx.Describe(k))
		case k.Tag == "!!merge":
			merges = append(merges, field{k, v})
		case seen[k.Value]:
			d.errorf(k, "duplicate key %q in %s", k.Value, what)
		default:
			seen[k.Value] = true
			out = append(out, field{k, v})
		}
	}
	for _, m := range merges {
		if depth > 10 {
			d.errorf(m.key, "merge keys nested too deep in %s", what)
			break
		}
		srcs := []*yaml.Node{m.val}
		if m.val.Kind == yaml.SequenceNode {
			srcs = m.val.Content
		}
		for _, src := range srcs {
			for _, f := range d.merged(src, what, depth+1) {
				if !seen[f.key.Value] {
					seen[f.key.Value] = true
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// fields is pairs with only known keys.
func (d *decoder) fields(n *yaml.Node, what string, known ...string) map[string]field {
	out := map[string]field{}
	for _, f := range d.pairs(n, what) {
		if !slices.Contains(known, f.key.Value) {
			d.errorf(f.key, "unknown field %q in %s (want one of %s)", f.key.Value, what, strings.Join(known, ", "))
			continue
		}
		out[f.key.Value] = f
	}
	return out
}

func (d *decoder) str(f field) (string, bool) {
	v := f.val
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		d.errorf(v, "%s must be a non-empty string, got %s", f.key.Value, yamlx.Describe(v))
		return "", false
	}
	return v.Value, true
}

func (d *decoder) list(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list, got %s", what, yamlx.Describe(n))
		return nil
	}
	var out []*yaml.Node
	for _, c := range n.Content {
		if c = d.deref(c); c != nil {
			out = append(out, c)
		}
	}
	return out
}

func (d *decoder) duration(f field, positive bool) (time.Duration, bool) {
	v := f.val
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		d.errorf(v, "%s must be a duration such as 30s, got %s", f.key.Value, yamlx.Describe(v))
		return 0, false
	}
	dur, err := time.ParseDuration(v.Value)
	switch {
	case err != nil:
		d.errorf(v, "invalid %s %q (want a duration such as 30s or 1m)", f.key.Value, v.Value)
		return 0, false
	case dur < 0 || (positive && dur == 0):
		d.errorf(v, "%s must be positive, got %q", f.key.Value, v.Value)
		return 0, false
	}
	return dur, true
}

// file1 decodes the top level into f and returns the rules entries, to be
// loaded once the rest is known sound.
func (d *decoder) file1(root *yaml.Node, f *File) []field {
	fs := d.fields(root, "test file", "rules", "interval", "tests")
	if root.Kind != yaml.MappingNode {
		return nil
	}
	if iv, ok := fs["interval"]; ok {
		if v, ok := d.duration(iv, true); ok {
			f.Interval = v
		}
	}
	var entries []field
	if r, ok := fs["rules"]; !ok {
		d.errorf(root, "rules is required: ruleset files or folders, or %s", Builtin)
	} else {
		items := d.list(r.val, "rules")
		if items != nil && len(items) == 0 {
			d.errorf(r.val, "rules is empty")
		}
		for _, it := range items {
			if _, ok := d.str(field{r.key, it}); ok {
				entries = append(entries, field{r.key, it})
			}
		}
	}
	t, ok := fs["tests"]
	if !ok {
		d.errorf(root, "tests is required")
		return entries
	}
	items := d.list(t.val, "tests")
	if items != nil && len(items) == 0 {
		d.errorf(t.val, "tests is empty")
	}
	names := map[string]rules.Position{}
	for _, it := range items {
		if tc := d.test(it, f.Interval); tc != nil {
			if prev, dup := names[tc.Name]; dup {
				d.diags = append(d.diags, rules.Diagnostic{Pos: tc.Pos, Msg: fmt.Sprintf("duplicate test name %q (first at %s)", tc.Name, prev)})
			}
			names[tc.Name] = tc.Pos
			f.Tests = append(f.Tests, tc)
		}
	}
	return entries
}

// rulesets loads what the entries name into one set.
func (d *decoder) rulesets(entries []field) *rules.Set {
	var sets []*rules.Ruleset
	for _, e := range entries {
		name := e.val.Value
		if name == Builtin {
			rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
			if err != nil {
				d.loadError(e.val, name, err)
				continue
			}
			sets = append(sets, rs)
			continue
		}
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(d.file), p)
		}
		if _, err := os.Stat(p); err != nil {
			d.errorf(e.val, "ruleset %s: %v", name, errors.Unwrap(err))
			continue
		}
		// Plugins are not checked: a test runs no actions.
		set, err := rules.LoadPaths([]string{p}, rules.LoadOptions{})
		if err != nil {
			d.loadError(e.val, name, err)
			continue
		}
		// One ruleset standing for what the path held, so NewSet can merge
		// it with the others and refuse a rule name used twice.
		sets = append(sets, &rules.Ruleset{Version: 1, Name: name, File: strings.Join(set.Files, ", "), Rules: set.Rules})
	}
	if len(d.diags) > 0 {
		return nil
	}
	set, err := rules.NewSet(sets...)
	if err != nil {
		d.errorf(entries[0].val, "the rulesets do not load together")
		var diags rules.Errors
		if errors.As(err, &diags) {
			d.diags = append(d.diags, diags...)
		} else {
			d.diags = append(d.diags, rules.Diagnostic{Pos: d.pos(entries[0].val), Msg: err.Error()})
		}
		return nil
	}
	return set
}

// loadError reports a ruleset that does not load: at the entry that named
// it, then each of its own faults, with their places in the ruleset.
func (d *decoder) loadError(at *yaml.Node, name string, err error) {
	d.errorf(at, "ruleset %s does not load", name)
	var diags rules.Errors
	if errors.As(err, &diags) {
		d.diags = append(d.diags, diags...)
		return
	}
	d.diags = append(d.diags, rules.Diagnostic{Pos: d.pos(at), Msg: err.Error()})
}

func (d *decoder) test(n *yaml.Node, interval time.Duration) *Test {
	fs := d.fields(n, "test", "name", "duration", "streams", "nodes", "servers", "expect")
	if n.Kind != yaml.MappingNode {
		return nil
	}
	ndiags := len(d.diags)
	tc := &Test{Pos: d.pos(n)}
	if f, ok := fs["name"]; ok {
		tc.Name, _ = d.str(f)
		tc.Pos = d.pos(f.val)
	} else {
		d.errorf(n, "test has no name")
	}
	var duration time.Duration
	hasDuration := false
	if f, ok := fs["duration"]; ok {
		duration, hasDuration = d.duration(f, false)
	}

	longest := 0
	var streamNames []string
	if f, ok := fs["streams"]; ok {
		for _, p := range d.pairs(f.val, "streams") {
			// Named even when its series is faulty, so its nodes are not
			// reported as lacking a stream as well.
			streamNames = append(streamNames, p.key.Value)
			ss := d.stream(p)
			if ss == nil {
				continue
			}
			tc.streams = append(tc.streams, ss)
			longest = max(longest, len(ss.values))
		}
	}
	var nodeKeys []*yaml.Node
	if f, ok := fs["nodes"]; ok {
		for _, p := range d.pairs(f.val, "nodes") {
			ns := d.node(p, streamNames)
			if ns == nil {
				continue
			}
			tc.nodes = append(tc.nodes, ns)
			nodeKeys = append(nodeKeys, p.key)
			for _, s := range ns.series {
				longest = max(longest, len(s))
			}
		}
	} else {
		d.errorf(n, "test has no nodes")
	}
	switch {
	case hasDuration:
		tc.ticks = int(duration/interval) + 1
	case longest > 0:
		tc.ticks = longest
	default:
		if len(d.diags) == ndiags {
			d.errorf(n, "test has no series to take its length from: give duration")
		}
		return nil
	}
	if tc.ticks > maxSamples {
		d.errorf(n, "test runs %d ticks, more than %d", tc.ticks, maxSamples)
		return nil
	}
	ids := map[string]*nodeSpec{}
	for i, ns := range tc.nodes {
		if prev, dup := ids[ns.id]; dup {
			d.errorf(nodeKeys[i], "node id %q is taken by node %s too: expectations could not tell them apart", ns.id, prev.name)
		}
		ids[ns.id] = ns
		d.settle(ns, tc.ticks, interval)
	}
	if f, ok := fs["servers"]; ok {
		tc.hasServers = true
		for _, p := range d.pairs(f.val, "servers") {
			if sv := d.server(p); sv != nil {
				tc.servers = append(tc.servers, sv)
			}
		}
	}
	if f, ok := fs["expect"]; ok {
		for _, it := range d.list(f.val, "expect") {
			if x := d.expectation(it, tc, interval); x != nil {
				tc.expect = append(tc.expect, x)
			}
		}
	}
	return tc
}

// stream reads one stream: its last-sequence series, or a mapping with
// that series as lastSeq and what else the stream shows.
func (d *decoder) stream(p field) *streamSpec {
	ss := &streamSpec{name: p.key.Value, retention: retentionLimits}
	if v := d.deref(p.val); v == nil || v.Kind != yaml.MappingNode {
		vals, ok := d.series(p)
		if !ok {
			return nil
		}
		ss.values = vals
		return ss
	}
	what := "stream " + p.key.Value
	fs := d.fields(p.val, what, "lastSeq", "firstSeq", "msgs", "maxMsgs", "maxAge", "retention", "discard")
	ok := true
	if f, has := fs["lastSeq"]; has {
		ss.values, ok = d.series(f)
	} else {
		d.errorf(p.key, "%s needs lastSeq: its last sequence at each tick", what)
		ok = false
	}
	for _, opt := range []struct {
		name string
		dst  *[]Sample
	}{{"firstSeq", &ss.firstSeq}, {"msgs", &ss.msgs}} {
		name, dst := opt.name, opt.dst
		if f, has := fs[name]; has {
			vals, good := d.series(f)
			if good && ss.values != nil && len(vals) != len(ss.values) {
				d.errorf(f.val, "%s has %d samples where lastSeq has %d: a stream's series must be equally long", name, len(vals), len(ss.values))
				good = false
			}
			*dst, ok = vals, ok && good
		}
	}
	if f, has := fs["maxMsgs"]; has {
		n, good := d.count(f)
		ss.maxMsgs, ok = n, ok && good
	}
	if f, has := fs["maxAge"]; has {
		dur, good := d.duration(f, true)
		ss.maxAge, ok = dur, ok && good
	}
	if f, has := fs["retention"]; has {
		s, good := d.str(f)
		if good && s != retentionLimits && s != retentionInterest && s != retentionWorkQueue {
			d.errorf(f.val, "unknown retention %q (want limits, interest or workqueue)", s)
			good = false
		}
		ss.retention, ok = s, ok && good
	}
	if f, has := fs["discard"]; has {
		s, good := d.str(f)
		if good && s != "old" && s != "new" {
			d.errorf(f.val, "unknown discard %q (want old or new)", s)
			good = false
		}
		ss.discardNew, ok = s == "new", ok && good
	}
	if !ok {
		return nil
	}
	return ss
}

// count reads a whole number above 0.
func (d *decoder) count(f field) (int64, bool) {
	v := f.val
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if v.Kind != yaml.ScalarNode || err != nil || n <= 0 {
		d.errorf(v, "%s must be a whole number above 0, got %s", f.key.Value, yamlx.Describe(v))
		return 0, false
	}
	return n, true
}

// series reads one series value, placing a fault in it at its column.
func (d *decoder) series(f field) ([]Sample, bool) {
	v := f.val
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		d.errorf(v, "%s must be a series such as 0+10x30, got %s", f.key.Value, yamlx.Describe(v))
		return nil, false
	}
	vals, err := ParseSeries(v.Value)
	var se *SeriesError
	if errors.As(err, &se) {
		d.diags = append(d.diags, rules.Diagnostic{Pos: d.column(v, se.Col), Msg: fmt.Sprintf("%s: %s", f.key.Value, se.Msg)})
		return nil, false
	}
	return vals, true
}

// column places the col-th character of a scalar's value in the file. The
// value is found verbatim on the scalar's line for a plain or quoted scalar
// on one line; elsewhere (block scalars, escapes, folded lines) the
// scalar's own place is the best there is.
func (d *decoder) column(v *yaml.Node, col int) rules.Position {
	p := d.pos(v)
	if v.Line < 1 || v.Line > len(d.lines) {
		return p
	}
	line := d.lines[v.Line-1]
	start := v.Column - 1
	if v.Style == yaml.DoubleQuotedStyle || v.Style == yaml.SingleQuotedStyle {
		start++
	}
	val := []rune(v.Value)
	if start < 0 || start+len(val) > len(line) || string(line[start:start+len(val)]) != v.Value {
		return p
	}
	p.Col = start + col
	return p
}

func (d *decoder) node(p field, streams []string) *nodeSpec {
	known := []string{"id", "group", "stream", "ackWait"}
	known = append(known, seriesNames[:]...)
	fs := d.fields(p.val, "node "+p.key.Value, known...)
	ns := &nodeSpec{name: p.key.Value, id: p.key.Value, pos: d.pos(p.key)}
	if f, ok := fs["id"]; ok {
		ns.id, _ = d.str(f)
	}
	if f, ok := fs["group"]; ok {
		ns.group, _ = d.str(f)
	}
	if f, ok := fs["stream"]; ok {
		ns.stream, _ = d.str(f)
	} else if len(streams) == 1 {
		ns.stream = streams[0]
	} else {
		d.errorf(p.key, "node %s needs stream: the test has %d streams", p.key.Value, len(streams))
	}
	if f, ok := fs["ackWait"]; ok {
		ns.ackWait, _ = d.duration(f, true)
	}
	for k, name := range seriesNames {
		if f, ok := fs[name]; ok {
			ns.series[k], _ = d.series(f)
			ns.seriesPos[k] = d.pos(f.val)
		}
	}
	return ns
}

// server reads one server's departure: when it went away (down), whether
// it announced it, and when it was last heard from (default: down).
func (d *decoder) server(p field) *serverSpec {
	fs := d.fields(p.val, "server "+p.key.Value, "down", "announced", "lastHeard")
	sv := &serverSpec{name: p.key.Value}
	f, ok := fs["down"]
	if !ok {
		d.errorf(p.key, "server %s has no down: the time it went away", p.key.Value)
		return nil
	}
	if sv.down, ok = d.duration(f, false); !ok {
		return nil
	}
	sv.lastHeard = sv.down
	if f, ok := fs["lastHeard"]; ok {
		if sv.lastHeard, ok = d.duration(f, false); !ok {
			return nil
		}
		if sv.lastHeard > sv.down {
			d.errorf(f.val, "server %s was last heard at %v, after it went away at %v", p.key.Value, sv.lastHeard, sv.down)
			return nil
		}
	}
	if f, ok := fs["announced"]; ok {
		if f.val.Kind != yaml.ScalarNode || (f.val.Value != "true" && f.val.Value != "false") {
			d.errorf(f.val, "announced must be true or false, got %s", yamlx.Describe(f.val))
			return nil
		}
		sv.announced = f.val.Value == "true"
	}
	return sv
}

// settle cuts a node's series to the test, checks that they are equally
// long and that acks never outrun deliveries.
func (d *decoder) settle(ns *nodeSpec, ticks int, interval time.Duration) {
	ns.length = -1
	longest := -1
	for k := range ns.series {
		if ns.series[k] == nil {
			continue
		}
		if len(ns.series[k]) > ticks {
			ns.series[k] = ns.series[k][:ticks]
		}
		if len(ns.series[k]) > longest {
			longest = len(ns.series[k])
		}
	}
	if longest < 0 {
		ns.length = ticks // nothing given: there all along, every default
		return
	}
	ns.length = longest
	for k := range ns.series {
		if s := ns.series[k]; s != nil && len(s) != longest {
			d.diags = append(d.diags, rules.Diagnostic{Pos: ns.seriesPos[k], Msg: fmt.Sprintf(
				"%s has %d samples where another series of node %s has %d: a node's series must be equally long (it leaves when they end)",
				seriesNames[k], len(s), ns.name, longest)})
			return
		}
	}
	for i := range ns.length {
		if ns.missing(i) {
			continue
		}
		delivered := ns.value(sDelivered, i, 0)
		switch {
		case ns.series[sAckPending] != nil:
			if ap := ns.value(sAckPending, i, 0); ap > delivered {
				d.diags = append(d.diags, rules.Diagnostic{Pos: ns.seriesPos[sAckPending], Msg: fmt.Sprintf(
					"at %s ackPending is %d, more than delivered (%d)", time.Duration(i)*interval, ap, delivered)})
				return
			}
		case ns.series[sAcked] != nil:
			if a := ns.value(sAcked, i, 0); a > delivered {
				d.diags = append(d.diags, rules.Diagnostic{Pos: ns.seriesPos[sAcked], Msg: fmt.Sprintf(
					"at %s acked is %d, more than delivered (%d)", time.Duration(i)*interval, a, delivered)})
				return
			}
		}
	}
}

// missing reports whether any series of the node has `_` at tick i.
func (ns *nodeSpec) missing(i int) bool {
	for _, s := range ns.series {
		if s != nil && s[i].Missing {
			return true
		}
	}
	return false
}

// value is series k at tick i, or def when the series is not given.
func (ns *nodeSpec) value(k, i int, def uint64) uint64 {
	if ns.series[k] == nil {
		return def
	}
	return ns.series[k][i].Value
}

var eventTypes = []string{events.TypeNodeDown, events.TypeNodeUp, events.TypeSystemDown, events.TypeSystemUp}

var reasons = map[string]string{
	"cleared":               events.ReasonCleared,
	events.ReasonLeft:       events.ReasonLeft,
	events.ReasonSuperseded: events.ReasonSuperseded,
	events.ReasonRemoved:    events.ReasonRemoved,
}

func (d *decoder) expectation(n *yaml.Node, tc *Test, interval time.Duration) *Expectation {
	fs := d.fields(n, "expectation", "at", "type", "node", "nodes", "pattern", "rule", "level", "group", "reason", "incident")
	if n.Kind != yaml.MappingNode {
		return nil
	}
	x := &Expectation{Pos: d.pos(n)}
	ok := true
	if f, has := fs["type"]; !has {
		d.errorf(n, "expectation has no type (want one of %s)", strings.Join(eventTypes, ", "))
		ok = false
	} else if s, good := d.str(f); good {
		if !slices.Contains(eventTypes, s) {
			d.errorf(f.val, "unknown event type %q (want one of %s)", s, strings.Join(eventTypes, ", "))
			ok = false
		}
		x.Type = s
	} else {
		ok = false
	}
	if f, has := fs["at"]; !has {
		d.errorf(n, "expectation has no at (a tick time such as 12s, or a window such as 10s..15s)")
		ok = false
	} else if !d.at(f, x, tc, interval) {
		ok = false
	}
	down := strings.HasSuffix(x.Type, ".down")
	nodeEvent := strings.HasPrefix(x.Type, "node.")
	only := func(name string, allowed bool, why string) (field, bool) {
		f, has := fs[name]
		if has && x.Type != "" && !allowed {
			d.errorf(f.key, "%s is not part of %s events (%s)", name, x.Type, why)
			ok = false
			return f, false
		}
		return f, has
	}
	if f, has := only("node", nodeEvent, "only node events name a node"); has {
		if s, good := d.str(f); good {
			if id, known := nodeID(tc, s); known {
				x.Node = id
			} else {
				d.errorf(f.val, "unknown node %q (the test's nodes are %s)", s, nodeList(tc))
				ok = false
			}
		}
	}
	if f, has := only("nodes", down, "only down events list affectedNodes"); has {
		x.HasNodes = true
		x.Nodes = []string{}
		for _, it := range d.list(f.val, "nodes") {
			s, good := d.str(field{f.key, it})
			if !good {
				ok = false
				continue
			}
			id, known := nodeID(tc, s)
			if !known {
				d.errorf(it, "unknown node %q (the test's nodes are %s)", s, nodeList(tc))
				ok = false
				continue
			}
			x.Nodes = append(x.Nodes, id)
		}
		sort.Strings(x.Nodes)
	}
	for _, name := range []string{"pattern", "rule", "incident"} {
		if f, has := fs[name]; has {
			s, _ := d.str(f)
			switch name {
			case "pattern":
				x.Pattern = s
			case "rule":
				x.Rule = s
			default:
				x.Incident = s
			}
		}
	}
	if f, has := only("level", down, "the level is on down events"); has {
		if s, good := d.str(f); good {
			if s != events.LevelWarning && s != events.LevelCritical {
				d.errorf(f.val, "unknown level %q (want warning or critical)", s)
				ok = false
			}
			x.Level = s
		}
	}
	if f, has := only("group", x.Type == events.TypeNodeDown, "only node.down carries the group"); has {
		x.Group, _ = d.str(f)
	}
	if f, has := only("reason", !down, "only up events carry a reason"); has {
		if s, good := d.str(f); good {
			r, known := reasons[s]
			if !known {
				d.errorf(f.val, "unknown reason %q (want cleared, left, superseded or rule-removed)", s)
				ok = false
			}
			x.Reason, x.HasReason = r, true
		}
	}
	if !ok {
		return nil
	}
	return x
}

// at reads `12s` or `10s..15s` into x.From and x.To.
func (d *decoder) at(f field, x *Expectation, tc *Test, interval time.Duration) bool {
	v := f.val
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		d.errorf(v, "at must be a tick time such as 12s or a window such as 10s..15s, got %s", yamlx.Describe(v))
		return false
	}
	lo, hi, window := strings.Cut(v.Value, "..")
	from, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		d.errorf(v, "invalid at %q (want a tick time such as 12s or a window such as 10s..15s)", v.Value)
		return false
	}
	to := from
	if window {
		if to, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			d.errorf(v, "invalid at %q (want a tick time such as 12s or a window such as 10s..15s)", v.Value)
			return false
		}
	}
	end := time.Duration(tc.ticks-1) * interval
	switch {
	case from < 0:
		d.errorf(v, "at %q is before the test starts (0s)", v.Value)
	case from > to:
		d.errorf(v, "at %q ends before it starts", v.Value)
	case from > end:
		d.errorf(v, "at %q is after the test's last tick (%s)", v.Value, end)
	case !window && from%interval != 0:
		d.errorf(v, "at %q is not a tick time (ticks are every %s; give a window such as %s..%s)", v.Value, interval, from.Truncate(interval), from.Truncate(interval)+interval)
	case window && from.Truncate(interval) == to.Truncate(interval) && from%interval != 0:
		d.errorf(v, "at %q holds no tick (ticks are every %s)", v.Value, interval)
	default:
		x.From, x.To = from, to
		return true
	}
	return false
}

// nodeID resolves a node named in an expectation, by name or by id.
func nodeID(tc *Test, s string) (string, bool) {
	for _, ns := range tc.nodes {
		if ns.name == s {
			return ns.id, true
		}
	}
	for _, ns := range tc.nodes {
		if ns.id == s {
			return ns.id, true
		}
	}
	return "", false
}

func nodeList(tc *Test) string {
	if len(tc.nodes) == 0 {
		return "none"
	}
	names := make([]string, len(tc.nodes))
	for i, ns := range tc.nodes {
		names[i] = ns.name
	}
	return strings.Join(names, ", ")
}
