package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/record"
	"github.com/happen-dev/happen/engine/replay"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/ruletest"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
)

// startRecordedEngine is startEngine with every sample recorded to path.
// It returns the recorder, closed when the engine stops.
func (w *world) startRecordedEngine(path string) *record.Writer {
	w.t.Helper()
	rec, err := record.Create(record.Config{Path: path, Interval: time.Second, Instance: "test"})
	if err != nil {
		w.t.Fatal(err)
	}
	w.startEngineConfig(nil, engine.Config{Recorder: rec}, func() {
		if err := rec.Close(); err != nil {
			w.t.Errorf("close recording: %v", err)
		}
	})
	return rec
}

// liveEvent is an incident event as it was published.
type liveEvent struct {
	at                       time.Time
	typ, node, pattern, rule string
	level, group, corr       string
	affected                 []string
	downSeconds              float64
}

func liveEvents(t *testing.T, envs []events.Envelope) []liveEvent {
	t.Helper()
	var out []liveEvent
	for _, e := range envs {
		le := liveEvent{at: time.UnixMilli(e.Context.Timestamp), typ: e.Type, corr: e.Context.CorrelationID}
		switch e.Type {
		case events.TypeNodeDown:
			p := decode[events.NodeDown](t, e)
			le.node, le.pattern, le.rule, le.level, le.group, le.affected = p.NodeID, p.Pattern, p.Rule, p.Level, p.Group, p.AffectedNodes
		case events.TypeNodeUp:
			p := decode[events.NodeUp](t, e)
			le.node, le.pattern, le.rule, le.downSeconds = p.NodeID, p.Pattern, p.Rule, p.DownSeconds
		case events.TypeSystemDown:
			p := decode[events.SystemDown](t, e)
			le.pattern, le.rule, le.level, le.affected = p.Pattern, p.Rule, p.Level, p.AffectedNodes
		case events.TypeSystemUp:
			p := decode[events.SystemUp](t, e)
			le.pattern, le.rule, le.downSeconds = p.Pattern, p.Rule, p.DownSeconds
		default:
			continue
		}
		out = append(out, le)
	}
	return out
}

// tickOf is the time of the recorded tick in which an event published at
// at was emitted: the last one sampled before it.
func tickOf(ticks []time.Time, at time.Time) time.Time {
	var best time.Time
	for _, tk := range ticks {
		// Published after its tick's sample; timestamps are milliseconds.
		if !tk.Truncate(time.Millisecond).After(at) {
			best = tk
		}
	}
	return best
}

// The engine records a real node failure and recovery; replaying the
// recording through the same rules gives the events the engine published:
// the same types, nodes, patterns, rules, levels and incidents, at the
// ticks they were published in. A ruleset without the node-failure rule
// differs by exactly that incident, and the recording converts into a
// rules test that passes.
func TestScenarioRecordAndReplay(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	w.publish(20)
	path := filepath.Join(t.TempDir(), "node-failure.rec")
	rec := w.startRecordedEngine(path)
	w.ticks(5)
	w.expectEvents(0, "healthy flow")

	w.workers["eu-2"].Kill()
	w.waitEvents(events.TypeNodeDown, 1, 30*time.Second)
	w.workers["eu-2"].Start()
	w.waitEvents(events.TypeNodeUp, 1, 30*time.Second)
	w.ticks(3)
	w.stopEngine()
	if rec.Dropped() != 0 {
		t.Fatalf("the recorder dropped %d ticks", rec.Dropped())
	}
	if dst := os.Getenv("HAPPEN_WRITE_REPLAY_FIXTURE"); dst != "" {
		// How cmd/happen/testdata/node-failure.rec is made.
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	live := liveEvents(t, w.all())
	if len(live) < 2 {
		t.Fatalf("live events: %s", summary(w.all()))
	}
	var ticks []time.Time
	r, err := record.Open(path, func(s string) { t.Errorf("reading the recording: %s", s) })
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		if e.Kind == record.Tick {
			ticks = append(ticks, e.At)
		}
	}
	r.Close()

	set := defaultSet(t)
	rp, err := replay.Open(path, func(s string) { t.Errorf("replay: %s", s) }, set)
	if err != nil {
		t.Fatal(err)
	}
	if rp.Ticks != len(ticks) || rp.Blind != 0 || rp.Header.Instance != "test" || rp.Header.Interval != time.Second {
		t.Fatalf("replay of %d ticks, %d blind, header %+v", rp.Ticks, rp.Blind, rp.Header)
	}
	got := rp.Results[0].Events
	var listing strings.Builder
	for _, e := range got {
		listing.WriteString("\n  " + e.Line(rp.Start))
	}
	if len(got) != len(live) {
		t.Fatalf("replay emitted %d events, the engine %d: %s\nreplayed:%s", len(got), len(live), summary(w.all()), listing.String())
	}
	corr := map[string]string{} // live correlationId -> replay incident
	inc := map[string]string{}  // and back
	used := make([]bool, len(got))
	for _, le := range live {
		tick := tickOf(ticks, le.at)
		found := -1
		for i, e := range got {
			if used[i] || e.Type != le.typ || e.Node != le.node || e.Pattern != le.pattern || e.Rule != le.rule || e.Level != le.level {
				continue
			}
			if d := e.At.Sub(tick).Abs(); d > time.Second {
				continue
			}
			found = i
			break
		}
		if found < 0 {
			t.Fatalf("live %s %s %s (tick %s) has no replayed event:%s", le.typ, le.node, le.pattern, tick.Format(time.RFC3339Nano), listing.String())
		}
		used[found] = true
		e := got[found]
		if !e.At.Equal(tick) {
			t.Logf("live %s %s emitted in the tick at %s, replayed at %s", le.typ, le.node, tick.Format(time.RFC3339Nano), e.At.Format(time.RFC3339Nano))
		}
		if e.Group != le.group || strings.Join(e.AffectedNodes, ",") != strings.Join(le.affected, ",") {
			t.Errorf("%s %s: replayed group %q nodes %v, live %q %v", le.typ, le.node, e.Group, e.AffectedNodes, le.group, le.affected)
		}
		if d := e.DownSeconds - le.downSeconds; d > 1 || d < -1 {
			t.Errorf("%s %s: replayed downSeconds %.1f, live %.1f", le.typ, le.node, e.DownSeconds, le.downSeconds)
		}
		// One incident live is one incident replayed, and the other way.
		if c, ok := corr[le.corr]; ok && c != e.Incident {
			t.Errorf("live incident %s is replayed as %s and %s", le.corr, c, e.Incident)
		}
		if c, ok := inc[e.Incident]; ok && c != le.corr {
			t.Errorf("replayed incident %s is live %s and %s", e.Incident, c, le.corr)
		}
		corr[le.corr], inc[e.Incident] = e.Incident, le.corr
	}
	t.Logf("replayed as the engine emitted them:%s", listing.String())

	t.Run("diff", func(t *testing.T) {
		// The node-failure rule made hard to satisfy: its incident goes,
		// nothing else changes.
		src := string(rulesets.Default)
		old := "    for: 1s\n    keepFiringFor: 2s\n    emit: node.down\n    pattern: node-failure\n"
		if !strings.Contains(src, old) {
			t.Fatal("the built-in node-failure rule is not where this test looks for it")
		}
		rs, err := rules.Parse("slow-failure.yaml", []byte(strings.Replace(src, old, strings.Replace(old, "for: 1s", "for: 1h", 1), 1)), rules.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tuned, err := rules.NewSet(rs)
		if err != nil {
			t.Fatal(err)
		}
		rp, err := replay.Open(path, nil, set, tuned)
		if err != nil {
			t.Fatal(err)
		}
		d := replay.Diff(rp.Results[0].Events, rp.Results[1].Events, replay.DiffTolerance(time.Second))
		var lines []string
		for _, c := range d.Changes {
			lines = append(lines, c.Line(rp.Start))
		}
		if d.OnlyA != 2 || d.OnlyB != 0 || d.Alike != len(got)-2 {
			t.Fatalf("diff: %s\n%s", d.Summary("builtin", "tuned"), strings.Join(lines, "\n"))
		}
		for i, typ := range []string{events.TypeNodeDown, events.TypeNodeUp} {
			c := d.Changes[i]
			if c.Op != '-' || c.Event.Type != typ || c.Event.Node != "eu-2" || c.Event.Pattern != "node-failure" {
				t.Fatalf("change %d: %s", i, c.Line(rp.Start))
			}
		}
		// The same ruleset twice: no change.
		if same := replay.Diff(got, rp.Results[0].Events, replay.DiffTolerance(time.Second)); !same.Same() || same.Alike != len(got) {
			t.Fatalf("a ruleset against itself: %s", same.Summary("a", "a"))
		}
	})

	t.Run("to test", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "node-failure.yaml")
		r, err := record.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		conv, err := replay.ToTest(r, r.Header(), replay.TestOptions{Path: out, Rules: ruletest.Builtin, Set: set, Recording: path})
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
		res := f.Run()
		if len(res) != 1 || !res[0].Passed() {
			t.Fatalf("the test made from the recording fails:\n%s\n%s", res[0].Report(), conv.YAML)
		}
		if conv.Nodes != 6 || conv.Ticks < len(ticks) {
			t.Fatalf("%d nodes, %d ticks (recorded %d)", conv.Nodes, conv.Ticks, len(ticks))
		}
		for _, d := range conv.Differences {
			t.Logf("test and replay differ: %s", d)
		}
		for _, n := range conv.Notes {
			t.Logf("note: %s", n)
		}
		t.Logf("test file:\n%s", conv.YAML)
	})
}
