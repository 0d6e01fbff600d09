package replay

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/record"
	"github.com/happen-dev/happen/internal/flowsim"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/ruletest"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
)

// These tests drive the replay with flowsim's deterministic snapshots; the
// replay of a recording made by a real engine is tested against what that
// engine published in engine/replay_scenario_test.go.

func builtin(t *testing.T) *rules.Set {
	t.Helper()
	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// scenario is two groups of three nodes on one stream; eu-2 crashes at
// 15s and comes back at 30s, late-1 is created at 20s, gone-1 deleted at
// 25s.
func scenario(interval time.Duration) flowsim.Scenario {
	sc := flowsim.Scenario{
		Name: "crash", Seed: 3, Duration: 45 * time.Second, Interval: interval,
		Streams: []flowsim.Stream{{Name: "ORDERS", Publish: flowsim.Publish{Kind: flowsim.Steady, Rate: 20}, InitialSeq: 500}},
		Faults: []flowsim.Fault{
			{At: 15 * time.Second, Kind: flowsim.Crash, Node: "eu-2"},
			{At: 30 * time.Second, Kind: flowsim.Restart, Node: "eu-2"},
		},
	}
	for _, id := range []string{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3"} {
		sc.Consumers = append(sc.Consumers, flowsim.Consumer{ID: id, Group: id[:2], Stream: "ORDERS"})
	}
	sc.Consumers = append(sc.Consumers,
		flowsim.Consumer{ID: "late-1", Group: "us", Stream: "ORDERS", CreatedAt: 20 * time.Second},
		flowsim.Consumer{ID: "gone-1", Group: "eu", Stream: "ORDERS", DeletedAt: 25 * time.Second})
	return sc
}

func snapshots(t *testing.T, sc flowsim.Scenario) []flow.Snapshot {
	t.Helper()
	sim := flowsim.New(sc)
	var out []flow.Snapshot
	for {
		s, ok := sim.Next()
		if !ok {
			break
		}
		out = append(out, s)
	}
	if err := sim.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// write records snaps, with blind[i] making tick i a failed sample.
func write(t *testing.T, snaps []flow.Snapshot, iv time.Duration, blind map[int]bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flow.rec")
	w, err := record.Create(record.Config{Path: path, Interval: iv, Instance: "sim", Start: snaps[0].At, Queue: len(snaps)})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range snaps {
		if blind[i] {
			w.RecordBlind(s.At, errors.New("list streams: timeout"))
			continue
		}
		w.Record(s)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func summary(evs []Event, start time.Time) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("\n  " + e.Line(start))
	}
	return b.String()
}

// Without blind spells the replay is the tracker and the evaluator run tick
// after tick, as ruletest and the engine run them.
func TestReplayIsTheTickLoop(t *testing.T) {
	snaps := snapshots(t, scenario(time.Second))
	path := write(t, snaps, time.Second, nil)
	set := builtin(t)
	rp, err := Open(path, func(s string) { t.Errorf("warning: %s", s) }, set)
	if err != nil {
		t.Fatal(err)
	}
	if rp.Ticks != len(snaps) || rp.Blind != 0 || rp.Runs != 1 || !rp.Start.Equal(snaps[0].At) || !rp.End.Equal(snaps[len(snaps)-1].At) {
		t.Fatalf("replay %+v", rp)
	}
	got := rp.Results[0].Events

	tr := flow.NewTracker(flow.ForInterval(time.Second))
	n := 0
	ev := newEvaluator(set, time.Second, func() string { n++; return "#" + strconv.Itoa(n) }, func(*rules.Rule, string, error) {})
	var want []string
	for _, s := range snaps {
		st := tr.Update(s)
		for _, tr := range ev.Eval(s.At, st) {
			want = append(want, tr.Kind.String()+" "+tr.Node.Consumer+" "+tr.Incident.Rule.Name+" "+s.At.Format(time.RFC3339Nano))
		}
	}
	var have []string
	for _, e := range got {
		kind := "fire"
		if strings.HasSuffix(e.Type, ".up") {
			kind = "resolve"
		}
		have = append(have, kind+" "+e.Consumer+" "+e.Rule+" "+e.At.Format(time.RFC3339Nano))
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(have, want) {
		t.Fatalf("replay:\n%s\ndirect:\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}

	// The crash is one node-failure incident of eu-2, down then up; the
	// consumer deleted and the one created raise nothing.
	if len(got) != 2 {
		t.Fatalf("events:%s", summary(got, rp.Start))
	}
	down, up := got[0], got[1]
	if down.Type != events.TypeNodeDown || down.Node != "eu-2" || down.Pattern != "node-failure" || down.Level != events.LevelCritical ||
		down.Group != "eu" || !slices.Equal(down.AffectedNodes, []string{"eu-2"}) || down.Stream != "ORDERS" || down.Consumer != "eu-2" {
		t.Fatalf("down %+v", down)
	}
	if up.Type != events.TypeNodeUp || up.Node != "eu-2" || up.Incident != down.Incident || up.Reason != events.ReasonCleared ||
		up.DownSeconds != up.At.Sub(down.At).Seconds() || up.Level != "" {
		t.Fatalf("up %+v (down %+v)", up, down)
	}
	if d := down.At.Sub(rp.Start); d < 15*time.Second || d > 25*time.Second {
		t.Fatalf("down %v after the start, the crash was at 15s", d)
	}
}

// A blind spell longer than flow.BlindReset starts every window afresh and
// holds incidents while they refill, as the engine does; a shorter one
// keeps the windows. Either way pending alerts start over.
func TestBlindSpells(t *testing.T) {
	for _, c := range []struct {
		name     string
		interval time.Duration
		blind    []int // ticks that failed
		reset    bool
	}{
		{"long", time.Second, []int{20, 21, 22, 23}, true},
		{"two missed at 1s", time.Second, []int{20}, true},
		{"short at 500ms", 500 * time.Millisecond, []int{50, 51}, false},
		{"long at 500ms", 500 * time.Millisecond, []int{40, 41, 42, 43, 44}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			snaps := snapshots(t, scenario(c.interval))
			// Ticks as the engine takes them: exactly an interval apart, so
			// the spell's length is what it says.
			for i := range snaps {
				snaps[i].At = snaps[0].At.Add(time.Duration(i) * c.interval)
			}
			blind := map[int]bool{}
			for _, i := range c.blind {
				blind[i] = true
			}
			e := newEngine(c.interval)
			j := &judge{res: &Result{}, downs: map[string]string{}, seen: map[string]bool{}}
			n := 0
			j.ev = newEvaluator(builtin(t), c.interval, func() string { n++; return "#" + strconv.Itoa(n) }, j.ruleError)
			resume := c.blind[len(c.blind)-1] + 1
			for i, s := range snaps {
				if blind[i] {
					e.goBlind(s.At)
					continue
				}
				st := e.tick(s, []*judge{j})
				if i != resume {
					continue
				}
				warming := 0
				for _, n := range st.Nodes {
					if n.Warming {
						warming++
					}
				}
				hold := s.At.Add(flow.ForInterval(c.interval).WarmUp + flow.BlindReset(c.interval))
				switch {
				case c.reset && (warming != len(st.Nodes) || !e.holdUntil.Equal(hold)):
					t.Fatalf("after the spell: %d of %d nodes warming, hold until %v, want all and %v", warming, len(st.Nodes), e.holdUntil, hold)
				case !c.reset && (warming != 0 || !e.holdUntil.IsZero()):
					t.Fatalf("after a short spell: %d nodes warming, hold until %v", warming, e.holdUntil)
				}
			}
			// Nothing changes while blind, nor while holding.
			from := snaps[c.blind[0]].At
			for _, ev := range j.res.Events {
				if !ev.At.Before(from) && ev.At.Before(e.holdUntil) {
					t.Fatalf("event while blind or holding: %s", ev.Line(snaps[0].At))
				}
			}

			// The recording says the same to Run.
			path := write(t, snaps, c.interval, blind)
			rp, err := Open(path, nil, builtin(t))
			if err != nil {
				t.Fatal(err)
			}
			if rp.Blind != len(c.blind) || rp.Ticks != len(snaps)-len(c.blind) {
				t.Fatalf("%d ticks, %d blind", rp.Ticks, rp.Blind)
			}
			if a, b := summary(rp.Results[0].Events, snaps[0].At), summary(j.res.Events, snaps[0].At); a != b {
				t.Fatalf("Run:%s\ntick by tick:%s", a, b)
			}
		})
	}
}

type entries []record.Entry

func (s *entries) Next() (record.Entry, error) {
	if len(*s) == 0 {
		return record.Entry{}, io.EOF
	}
	e := (*s)[0]
	*s = (*s)[1:]
	return e, nil
}

// A restarted engine starts its windows afresh; one restarted at another
// interval is not one recording; dropped ticks are noted.
func TestRunsAndDrops(t *testing.T) {
	snaps := snapshots(t, scenario(time.Second))
	hdr := record.Header{Version: 1, Interval: time.Second, Start: snaps[0].At, Instance: "a"}
	var src entries
	for i, s := range snaps {
		if i == 10 {
			src = append(src, record.Entry{Kind: record.Run, Header: record.Header{Version: 1, Interval: time.Second, Start: s.At, Instance: "a"}, Pos: "f:12"})
		}
		if i == 12 {
			src = append(src, record.Entry{Kind: record.Dropped, Dropped: 3, Pos: "f:15"})
		}
		src = append(src, record.Entry{Kind: record.Tick, Snapshot: s, At: s.At})
	}
	rp, err := Run(&src, hdr, builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	if rp.Runs != 2 || rp.Dropped != 3 || len(rp.Notes) != 1 || !strings.HasPrefix(rp.Notes[0], "f:15: the recorder dropped 3 ticks") {
		t.Fatalf("runs %d, dropped %d, notes %q", rp.Runs, rp.Dropped, rp.Notes)
	}

	src = entries{
		{Kind: record.Tick, Snapshot: snaps[0], At: snaps[0].At},
		{Kind: record.Run, Header: record.Header{Version: 1, Interval: 2 * time.Second}, Pos: "f:3"},
	}
	if _, err := Run(&src, hdr, builtin(t)); err == nil || !strings.Contains(err.Error(), "f:3: the engine was restarted at interval 2s") {
		t.Fatalf("err = %v", err)
	}
	src = entries{}
	if _, err := Run(&src, hdr); err == nil {
		t.Fatal("no ruleset: no error")
	}
}

func TestDiff(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ev := func(sec float64, typ, node, pattern string) Event {
		return Event{At: t0.Add(time.Duration(sec * float64(time.Second))), Type: typ, Node: node, Pattern: pattern, Rule: pattern, Incident: "#1"}
	}
	down, up := events.TypeNodeDown, events.TypeNodeUp
	for _, c := range []struct {
		name        string
		a, b        []Event
		want        string // ops and nodes of the changes
		alike       int
		onlyA, only int
	}{
		{"same", []Event{ev(1, down, "n1", "p"), ev(5, up, "n1", "p")}, []Event{ev(1, down, "n1", "p"), ev(5, up, "n1", "p")}, "", 2, 0, 0},
		{"moved within tolerance", []Event{ev(10, down, "n1", "p")}, []Event{ev(12, down, "n1", "p")}, "", 1, 0, 0},
		{"moved beyond", []Event{ev(10, down, "n1", "p")}, []Event{ev(12.5, down, "n1", "p")}, "-n1@10 +n1@12.5", 0, 1, 1},
		{"other pattern", []Event{ev(10, down, "n1", "p")}, []Event{ev(10, down, "n1", "q")}, "-n1@10 +n1@10", 0, 1, 1},
		{"other node", []Event{ev(10, down, "n1", "p")}, []Event{ev(10, down, "n2", "p")}, "-n1@10 +n2@10", 0, 1, 1},
		{"only in b", nil, []Event{ev(3, down, "n1", "p")}, "+n1@3", 0, 0, 1},
		{"closest is matched", []Event{ev(10, down, "n1", "p"), ev(11, down, "n1", "p")}, []Event{ev(11, down, "n1", "p")}, "-n1@10", 1, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Diff(c.a, c.b, 2*time.Second)
			var got []string
			for _, ch := range d.Changes {
				got = append(got, string(ch.Op)+ch.Event.Node+"@"+strings.TrimSuffix(ch.Event.At.Sub(t0).String(), "s"))
			}
			if strings.Join(got, " ") != c.want || d.Alike != c.alike || d.OnlyA != c.onlyA || d.OnlyB != c.only || d.Same() != (c.want == "") {
				t.Fatalf("changes %q alike %d onlyA %d onlyB %d", got, d.Alike, d.OnlyA, d.OnlyB)
			}
		})
	}
	d := Diff([]Event{ev(1, down, "n1", "p")}, nil, time.Second)
	if s := d.Summary("a.yaml", "b.yaml"); s != "1 events only under a.yaml (-), 0 only under b.yaml (+), 0 alike" {
		t.Fatalf("summary %q", s)
	}
	if s := Diff(nil, nil, time.Second).Summary("a", "b"); s != "no change: 0 events alike under a and b" {
		t.Fatalf("summary %q", s)
	}
	if l := d.Changes[0].Line(t0); l != "- 2026-12-03T10:00:01.000Z   +1.000s  node.down   node=n1 pattern=p rule=p incident=#1" {
		t.Fatalf("line %q", l)
	}
}

func TestEventLineAndJSON(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	up := Event{At: t0.Add(12345 * time.Millisecond), Type: events.TypeNodeUp, Node: "eu-1", Stream: "ORDERS", Consumer: "c1",
		Pattern: "node-failure", Rule: "node-failure", Incident: "#2", DownSeconds: 4, Reason: events.ReasonLeft}
	if l := up.Line(t0); l != "2026-12-03T10:00:12.345Z  +12.345s  node.up     node=eu-1 pattern=node-failure rule=node-failure reason=left down=4.0s incident=#2" {
		t.Fatalf("line %q", l)
	}
	var got map[string]any
	if err := json.Unmarshal(up.JSON(t0), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"at": "2026-12-03T10:00:12.345Z", "offset": 12.345, "type": "node.up", "nodeId": "eu-1", "stream": "ORDERS",
		"consumer": "c1", "pattern": "node-failure", "rule": "node-failure", "incident": "#2", "downSeconds": 4.0, "reason": "left"}
	if len(got) != len(want) {
		t.Fatalf("json %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("json %s = %v, want %v", k, got[k], v)
		}
	}
	sys := Event{At: t0, Type: events.TypeSystemDown, Pattern: "overload", Rule: "system-overload", Level: "warning", AffectedNodes: []string{"a", "b"}, Incident: "#1"}
	if l := sys.Line(t0); l != "2026-12-03T10:00:00.000Z   +0.000s  system.down pattern=overload rule=system-overload level=warning incident=#1" {
		t.Fatalf("line %q", l)
	}
	if s := string(sys.JSON(t0)); strings.Contains(s, "downSeconds") || !strings.Contains(s, `"affectedNodes":["a","b"]`) {
		t.Fatalf("json %s", s)
	}
}

func TestCompress(t *testing.T) {
	vals := func(vs ...int) []ruletest.Sample {
		out := make([]ruletest.Sample, len(vs))
		for i, v := range vs {
			if v < 0 {
				out[i].Missing = true
			} else {
				out[i].Value = uint64(v)
			}
		}
		return out
	}
	for _, c := range []struct {
		in   []ruletest.Sample
		want string
	}{
		{vals(0, 20, 40, 60), "0+20x3"},
		{vals(5, 5, 5), "5x2"},
		{vals(7), "7"},
		{vals(3, 9), "3 9"},
		{vals(9, 6, 3, 0), "9-3x3"},
		{vals(-1, -1, -1, 4, 4), "_x3 4x1"},
		{vals(1, -1, 2), "1 _ 2"},
		{vals(0, 20, 40, 100, 100, 100, 120, 140), "0+20x2 100x2 120 140"},
		{vals(0, 20, 40, 60, 70), "0+20x3 70"},
	} {
		got := Compress(c.in)
		if got != c.want {
			t.Errorf("Compress(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	// Whatever it writes, promtool's notation gives back.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		n := 1 + rng.IntN(40)
		in := make([]ruletest.Sample, n)
		v := uint64(rng.IntN(100))
		for i := range in {
			switch r := rng.IntN(10); {
			case r == 0:
				in[i].Missing = true
				continue
			case r < 4:
				v += 20
			case r < 6:
				v = uint64(rng.IntN(1000))
			}
			in[i].Value = v
		}
		s := Compress(in)
		back, err := ruletest.ParseSeries(s)
		if err != nil || !slices.Equal(back, in) {
			t.Fatalf("%v -> %q -> %v, %v", in, s, back, err)
		}
	}
}

// A recording with nodes that appear, leave and go unread, and a blind
// spell, converts into a test that passes and says so in its series.
func TestToTest(t *testing.T) {
	snaps := snapshots(t, scenario(time.Second))
	// us-3 unread at ticks 5 and 6; the sampler blind at ticks 36 and 37.
	for _, i := range []int{5, 6} {
		s := &snaps[i]
		for k, c := range s.Consumers {
			if c.NodeID == "us-3" {
				s.Consumers = slices.Delete(s.Consumers, k, k+1)
				s.Unobserved = append(s.Unobserved, c.Key)
				break
			}
		}
	}
	path := write(t, snaps, time.Second, map[int]bool{36: true, 37: true})
	out := filepath.Join(t.TempDir(), "tests", "crash.yaml")
	os.Mkdir(filepath.Dir(out), 0o755)
	r, err := record.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	set := builtin(t)
	conv, err := ToTest(r, r.Header(), TestOptions{Path: out, Rules: ruletest.Builtin, Set: set, Recording: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, conv.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := ruletest.Load(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, conv.YAML)
	}
	if res := f.Run(); !res[0].Passed() {
		t.Fatalf("%s\n%s", res[0].Report(), conv.YAML)
	}
	if conv.Ticks != len(snaps) || conv.Nodes != 8 {
		t.Fatalf("%d ticks, %d nodes", conv.Ticks, conv.Nodes)
	}
	y := string(conv.YAML)
	series := func(node, name string) string {
		i := strings.Index(y, "\n      "+node+":\n")
		if i < 0 {
			t.Fatalf("no node %s:\n%s", node, y)
		}
		rest := y[i:]
		j := strings.Index(rest, "\n        "+name+":")
		if j < 0 {
			t.Fatalf("node %s has no %s:\n%s", node, name, y)
		}
		line := rest[j+1:]
		line = line[:strings.IndexByte(line, '\n')]
		return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), name+":"))
	}
	parse := func(node, name string) []ruletest.Sample {
		s, err := ruletest.ParseSeries(series(node, name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	missing := func(s []ruletest.Sample) []int {
		var out []int
		for i, v := range s {
			if v.Missing {
				out = append(out, i)
			}
		}
		return out
	}
	// Unread, and blind: _ there, and nowhere else.
	if got := missing(parse("us-3", "delivered")); !slices.Equal(got, []int{5, 6, 36, 37}) {
		t.Errorf("us-3 missing at %v, want 5 6 36 37", got)
	}
	// Created at 20s: it appears then.
	late := parse("late-1", "delivered")
	if m := missing(late); len(m) < 20 || m[0] != 0 || len(late) != len(snaps) {
		t.Errorf("late-1: %d samples, missing at %v", len(late), m)
	}
	// Deleted at 25s: its series end there.
	if gone := parse("gone-1", "delivered"); len(gone) < 24 || len(gone) > 26 {
		t.Errorf("gone-1 has %d samples", len(gone))
	}
	if !strings.Contains(y, "rules: [builtin]\ninterval: 1s\n") || !strings.Contains(y, "    duration: "+(time.Duration(len(snaps)-1)*time.Second).String()+"\n") {
		t.Errorf("header of the test:\n%s", y)
	}
	// It froze the crash, as the replay of the recording sees it.
	var kinds []string
	for _, e := range conv.Expected {
		kinds = append(kinds, e.Type+" "+e.Node+" "+e.Pattern)
	}
	if strings.Join(kinds, ", ") != "node.down eu-2 node-failure, node.up eu-2 node-failure" {
		t.Errorf("expected %q", kinds)
	}
	for _, d := range conv.Differences {
		t.Logf("difference: %s", d)
	}
	for _, n := range conv.Notes {
		t.Logf("note: %s", n)
	}
	if len(conv.Replayed) != 2 {
		t.Errorf("replayed %d events", len(conv.Replayed))
	}
	// Only what differs from a test's defaults is given.
	if strings.Contains(series("eu-2", "waitingPulls"), "0x") == false || strings.Contains(y, "      eu-1:\n        group: eu\n        stream: ORDERS\n        ackWait: 30s\n        delivered:") == false {
		t.Errorf("series given:\n%s", y)
	}
}

func TestToTestNamesWhatItCannotCarry(t *testing.T) {
	snaps := snapshots(t, scenario(time.Second))
	for i := range snaps {
		for k := range snaps[i].Consumers {
			c := &snaps[i].Consumers[k]
			switch c.NodeID {
			case "us-1":
				c.Push, c.PushBound, c.NumWaiting = true, true, 0
			case "us-2":
				c.Leader = "n1"
				if i > 10 {
					c.Leader = "n2"
				}
			}
		}
	}
	var src entries
	for _, s := range snaps {
		src = append(src, record.Entry{Kind: record.Tick, Snapshot: s, At: s.At})
	}
	conv, err := ToTest(&src, record.Header{Interval: time.Second, Start: snaps[0].At},
		TestOptions{Path: filepath.Join(t.TempDir(), "x.yaml"), Rules: ruletest.Builtin, Set: builtin(t)})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(conv.Notes, "\n")
	for _, want := range []string{"push consumers, which the test models as pull consumers (node.push is false there): ORDERS/us-1", "leader changes (failovers), which the test cannot make: ORDERS/us-2"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	// A bound push consumer's client is there: the test gives it a pull.
	if !strings.Contains(string(conv.YAML), "      us-1:\n        group: us\n        stream: ORDERS\n") {
		t.Fatalf("yaml:\n%s", conv.YAML)
	}
	if _, err := ToTest(&entries{}, record.Header{Interval: time.Second}, TestOptions{Rules: ruletest.Builtin, Set: builtin(t)}); err == nil {
		t.Fatal("an empty recording converts")
	}
}

func TestYAMLString(t *testing.T) {
	for in, want := range map[string]string{
		"eu-1":      "eu-1",
		"orders.v2": "orders.v2",
		"true":      `"true"`,
		"No":        `"No"`,
		"1abc":      `"1abc"`,
		"a b":       `"a b"`,
		`x"y`:       `"x\"y"`,
		"../r.yaml": `"../r.yaml"`,
		"":          `""`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
	}
}
