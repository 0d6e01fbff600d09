package ruletest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// write puts files into a fresh folder and returns the path of the first.
func write(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(files); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, files[i]), []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, files[0])
}

// failure is the node-failure shape of rulesets/tests: healthy for 15s,
// dead for 20s while work piles up, then draining and healthy again.
const failure = `
        delivered:    0+20x15 300x19 360+60x9 920+20x14
        pending:      0x15 20+20x19 360-40x9 0x14
        waitingPulls: 1x15 0x19 1x24`

const twoFailures = `rules: [builtin]
tests:
  - name: two nodes of different groups fail at once
    streams:
      ORDERS: 0+20x60
    nodes:
      eu-1:
        group: eu` + failure + `
      us-1:
        id: orders-us-1
        group: us` + failure + `
      eu-2: {group: eu, delivered: 0+20x60}
      us-2: {group: us, delivered: 0+20x60}
    expect:
`

func runFile(t *testing.T, path string) []*Result {
	t.Helper()
	f, err := Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return f.Run()
}

func TestPassing(t *testing.T) {
	path := write(t, "t.yaml", twoFailures+`
      - {at: 17s..25s, type: node.down, node: eu-1, pattern: node-failure, level: critical, rule: node-failure, group: eu, nodes: [eu-1], incident: a}
      - {at: 17s..25s, type: node.down, node: orders-us-1, pattern: node-failure, group: us, nodes: [us-1], incident: b}
      - {at: 36s..46s, type: node.up, node: eu-1, pattern: node-failure, reason: cleared, incident: a}
      - {at: 36s..46s, type: node.up, node: us-1, incident: b}
`)
	res := runFile(t, path)
	if len(res) != 1 || !res[0].Passed() {
		t.Fatalf("want a pass, got:\n%s", res[0].Report())
	}
	if len(res[0].Events) != 4 || res[0].Report() != "" {
		t.Fatalf("events %v, report %q", res[0].Events, res[0].Report())
	}
	for _, e := range res[0].Events {
		if e.Type == "node.down" && e.Node == "orders-us-1" && e.Group != "us" {
			t.Fatalf("node.down of us-1 = %+v", e)
		}
	}
}

func TestFailingShowsDiff(t *testing.T) {
	path := write(t, "t.yaml", twoFailures+`
      - {at: 17s..25s, type: node.down, node: eu-1, pattern: bottleneck}
      - {at: 17s..25s, type: node.down, node: us-1}
      - {at: 36s..46s, type: node.up, node: us-1}
`)
	res := runFile(t, path)[0]
	if res.Passed() {
		t.Fatal("a wrong expectation passed")
	}
	rep := res.Report()
	for _, want := range []string{
		"expected, not emitted:\n    " + path + ":22:9: at 17s..25s: node.down node=eu-1 pattern=bottleneck\n",
		"emitted, not expected:\n",
		"at 17s: node.down node=eu-1 pattern=node-failure rule=node-failure level=critical group=eu nodes=[eu-1] incident=#1\n",
		"at 38s: node.up node=eu-1 pattern=node-failure rule=node-failure incident=#1\n",
		"emitted, in order:\n       17s  node.down node=eu-1",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	if len(res.Missing) != 1 || len(res.Unexpected) != 2 {
		t.Errorf("missing %v, unexpected %v", res.Missing, res.Unexpected)
	}
}

func TestIncidentLabels(t *testing.T) {
	for _, c := range []struct {
		name, expect string
		pass         bool
		hint         bool
	}{
		{"one label per incident", `
      - {at: 17s, type: node.down, node: eu-1, incident: a}
      - {at: 17s, type: node.down, node: us-1, incident: b}
      - {at: 38s, type: node.up, node: eu-1, incident: a}
      - {at: 38s, type: node.up, node: us-1, incident: b}`, true, false},
		{"labels may be left out", `
      - {at: 17s, type: node.down, node: eu-1, incident: a}
      - {at: 17s, type: node.down, node: us-1}
      - {at: 38s, type: node.up, node: eu-1, incident: a}
      - {at: 38s, type: node.up, node: us-1}`, true, false},
		{"two incidents under one label", `
      - {at: 17s, type: node.down, node: eu-1, incident: a}
      - {at: 17s, type: node.down, node: us-1, incident: a}
      - {at: 38s, type: node.up, node: eu-1}
      - {at: 38s, type: node.up, node: us-1}`, false, true},
		{"one incident under two labels", `
      - {at: 17s, type: node.down, node: eu-1, incident: a}
      - {at: 17s, type: node.down, node: us-1, incident: b}
      - {at: 38s, type: node.up, node: eu-1, incident: b}
      - {at: 38s, type: node.up, node: us-1, incident: a}`, false, true},
		{"labels that fit either way round", `
      - {at: 17s, type: node.down, incident: x}
      - {at: 17s, type: node.down, incident: y}
      - {at: 38s, type: node.up, node: us-1, incident: x}
      - {at: 38s, type: node.up, node: eu-1, incident: y}`, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := runFile(t, write(t, "t.yaml", twoFailures+c.expect+"\n"))[0]
			if res.Passed() != c.pass {
				t.Fatalf("passed = %v, want %v:\n%s", res.Passed(), c.pass, res.Report())
			}
			if got := len(res.Hints) > 0; got != c.hint {
				t.Fatalf("hints %q, want some: %v", res.Hints, c.hint)
			}
		})
	}
}

func TestNodeLeaves(t *testing.T) {
	// eu-1's series end at 30s, while it is down: from 31s it has left,
	// leaving its incident (node.up, reason left), and is judged no more.
	path := write(t, "t.yaml", `rules: [builtin]
tests:
  - name: a failed node is deleted
    duration: 40s
    streams:
      ORDERS: 0+20x40
    nodes:
      eu-1:
        group: eu
        delivered: 0+20x15 300x14
        pending:   0x15 20+20x14
        waitingPulls: 1x15 0x14   # its client is gone: no pull requests
      eu-2: {group: eu, delivered: 0+20x40}
      us-1: {group: us, delivered: 0+20x40}
    expect:
      - {at: 17s..25s, type: node.down, node: eu-1, pattern: node-failure, incident: a}
      - {at: 31s, type: node.up, node: eu-1, reason: left, incident: a}
`)
	if res := runFile(t, path)[0]; !res.Passed() {
		t.Fatal(res.Report())
	}
}

// A node that left keeps the id it went down with (its happen.node
// metadata), though it is no longer in the listing.
func TestNodeLeavesWithItsID(t *testing.T) {
	path := write(t, "t.yaml", `rules: [builtin]
tests:
  - name: a failed node with a metadata id is deleted
    duration: 40s
    streams:
      ORDERS: 0+20x40
    nodes:
      eu-1:
        id: orders-eu-1
        group: eu
        delivered: 0+20x15 300x14
        pending:   0x15 20+20x14
        waitingPulls: 1x15 0x14
      eu-2: {group: eu, delivered: 0+20x40}
      us-1: {group: us, delivered: 0+20x40}
    expect:
      - {at: 17s..25s, type: node.down, node: orders-eu-1, pattern: node-failure, incident: a}
      - {at: 31s, type: node.up, node: orders-eu-1, reason: left, incident: a}
`)
	if res := runFile(t, path)[0]; !res.Passed() {
		t.Fatal(res.Report())
	}
}

// A node that is down and then cannot be read is unobserved, not gone: its
// incident stays open (no node.up, reason left).
func TestDownThenUnobservedStaysDown(t *testing.T) {
	path := write(t, "t.yaml", `rules: [builtin]
tests:
  - name: a failed node becomes unreadable
    duration: 40s
    streams:
      ORDERS: 0+20x40
    nodes:
      eu-1:
        id: orders-eu-1
        group: eu
        delivered:    0+20x15 300x10 _x15
        pending:      0x15 20+20x10 _x15
        waitingPulls: 1x15 0x10 _x15
      eu-2: {group: eu, delivered: 0+20x40}
      us-1: {group: us, delivered: 0+20x40}
    expect:
      - {at: 17s..20s, type: node.down, node: orders-eu-1, pattern: node-failure}
`)
	if res := runFile(t, path)[0]; !res.Passed() {
		t.Fatal(res.Report())
	}
}

// A broken second YAML document is a broken file, not a passing one.
func TestBrokenSecondDocument(t *testing.T) {
	good := "rules: [builtin]\ntests:\n  - name: x\n    duration: 2s\n    streams: {S: 0x2}\n    nodes: {eu-1: {}}\n"
	if _, err := Load(write(t, "good.yaml", good)); err != nil {
		t.Fatalf("the first document alone: %v", err)
	}
	path := write(t, "t.yaml", good+"---\nfoo: [bar\n")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "t.yaml:") || !strings.Contains(err.Error(), "yaml: ") {
		t.Fatalf("Load = %v, want a file:line:col YAML syntax error", err)
	}
}

func TestUnobservedIsNotDown(t *testing.T) {
	// A node that cannot be read for a while is neither healthy nor down,
	// and is watched afresh (warming) when it is back.
	path := write(t, "t.yaml", `rules: [builtin]
tests:
  - name: a node unreadable for 10s
    streams:
      ORDERS: 0+20x40
    nodes:
      eu-1: {group: eu, delivered: 0+20x15 _x10 520+20x14}
      eu-2: {group: eu, delivered: 0+20x40}
`)
	if res := runFile(t, path)[0]; !res.Passed() {
		t.Fatal(res.Report())
	}
}

func TestLoadErrors(t *testing.T) {
	const ok = `rules: [builtin]
tests:
  - name: t
    streams: {S: 0+1x10}
    nodes:
      n1: {delivered: 0+1x10}
`
	for _, c := range []struct {
		name string
		src  string
		want []string // each "line:col: message part"
	}{
		{"yaml syntax", "rules: [builtin\ntests: []\n", []string{":1:1: yaml: did not find expected"}},
		{"unknown field", "intervall: 1s\n" + ok, []string{`:1:1: unknown field "intervall" in test file`}},
		{"bad interval", "interval: 1 s\n" + ok, []string{`:1:11: invalid interval "1 s"`}},
		{"bad duration", strings.Replace(ok, "  - name: t\n", "  - name: t\n    duration: soon\n", 1), []string{`:4:15: invalid duration "soon"`}},
		{"bad series", strings.Replace(ok, "0+1x10}\n    nodes", "0+1y10}\n    nodes", 1), []string{`:4:21: S: unexpected 'y'`}},
		{"bad series quoted", strings.Replace(ok, "{delivered: 0+1x10}", `{delivered: "0 1 2 x"}`, 1), []string{`:6:30: delivered: want a value`}},
		{"unknown node field", strings.Replace(ok, "{delivered:", "{deliverd:", 1), []string{`:6:12: unknown field "deliverd" in node n1`}},
		{"series lengths", strings.Replace(ok, "{delivered: 0+1x10}", "{delivered: 0+1x10, pending: 0x5}", 1), []string{`:6:40: pending has 6 samples where another series of node n1 has 11`}},
		{"acks outrun deliveries", strings.Replace(ok, "{delivered: 0+1x10}", "{delivered: 0+1x10, acked: 0+2x10}", 1), []string{`:6:38: at 1s acked is 2, more than delivered (1)`}},
		{"unknown node in expectation", ok + "    expect:\n      - {at: 2s, type: node.down, node: n2}\n", []string{`:8:41: unknown node "n2"`}},
		{"unknown node in nodes", ok + "    expect:\n      - {at: 2s, type: system.down, nodes: [n1, nX]}\n", []string{`:8:49: unknown node "nX"`}},
		{"no type", ok + "    expect:\n      - {at: 2s}\n", []string{`:8:9: expectation has no type`}},
		{"at off tick", ok + "    expect:\n      - {at: 1500ms, type: node.down}\n", []string{`:8:14: at "1500ms" is not a tick time`}},
		{"at past the end", ok + "    expect:\n      - {at: 5s..20s, type: node.down}\n", []string{}},
		{"at after the end", ok + "    expect:\n      - {at: 11s, type: node.down}\n", []string{`:8:14: at "11s" is after the test's last tick (10s)`}},
		{"field of another event", ok + "    expect:\n      - {at: 1s, type: node.up, level: critical}\n", []string{`:8:33: level is not part of node.up events`}},
		{"two streams, no stream", strings.Replace(ok, "{S: 0+1x10}", "{S: 0+1x10, T: 0x10}", 1), []string{`:6:7: node n1 needs stream: the test has 2 streams`}},
		{"missing ruleset", strings.Replace(ok, "[builtin]", "[builtin, nope.yaml]", 1), []string{`:1:18: ruleset nope.yaml: no such file or directory`}},
		{"ruleset that does not load", strings.Replace(ok, "[builtin]", "[bad.yaml]", 1), []string{`:1:9: ruleset bad.yaml does not load`, `bad.yaml:5:12: unknown scope "nod"`}},
		{"rule name used twice", strings.Replace(ok, "[builtin]", "[builtin, builtin]", 1), []string{`duplicate rule name`}},
		{"stream without lastSeq", strings.Replace(ok, "{S: 0+1x10}", "{S: {maxMsgs: 5}}", 1), []string{`:4:15: stream S needs lastSeq`}},
		{"unknown stream field", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, maxMsg: 5}}", 1), []string{`:4:36: unknown field "maxMsg" in stream S`}},
		{"bad retention", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, retention: queue}}", 1), []string{`:4:47: unknown retention "queue"`}},
		{"bad discard", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, discard: oldest}}", 1), []string{`:4:45: unknown discard "oldest"`}},
		{"bad maxMsgs", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, maxMsgs: -1}}", 1), []string{`:4:45: maxMsgs must be a whole number above 0`}},
		{"bad maxAge", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, maxAge: 0s}}", 1), []string{`:4:44: maxAge must be positive`}},
		{"server without down", ok + "    servers:\n      s1: {announced: true}\n", []string{`:8:7: server s1 has no down`}},
		{"server bad announced", ok + "    servers:\n      s1: {down: 2s, announced: yes}\n", []string{`:8:33: announced must be true or false`}},
		{"server heard after down", ok + "    servers:\n      s1: {down: 2s, lastHeard: 3s}\n", []string{`:8:33: server s1 was last heard at 3s, after it went away at 2s`}},
		{"unknown server field", ok + "    servers:\n      s1: {down: 2s, annonced: true}\n", []string{`:8:22: unknown field "annonced" in server s1`}},
		{"stream series lengths", strings.Replace(ok, "{S: 0+1x10}", "{S: {lastSeq: 0+1x10, firstSeq: 1x5}}", 1), []string{`:4:46: firstSeq has 6 samples where lastSeq has 11`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := write(t, "t.yaml", c.src, "bad.yaml", "version: 1\nname: bad\nrules:\n  - name: x\n    scope: nod\n    when: node.stalled\n    emit: node.down\n    pattern: x\n    level: warning\n")
			_, err := Load(path)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Join(Diagnostics(err), "\n")
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, got)
				}
			}
			for _, line := range Diagnostics(err) {
				if !strings.Contains(line, ".yaml:") {
					t.Errorf("diagnostic without a file position: %q", line)
				}
			}
		})
	}
}

func TestPaths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.yaml", "a.yml", "c.txt", ".hidden.yaml"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755)
	got, err := Paths([]string{dir})
	if err != nil || strings.Join(got, ",") != filepath.Join(dir, "a.yml")+","+filepath.Join(dir, "b.yaml") {
		t.Fatalf("Paths = %v, %v", got, err)
	}
	if _, err := Paths([]string{filepath.Join(dir, "sub.yaml")}); err == nil {
		t.Fatal("an empty folder gave no error")
	}
	if _, err := Paths([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("a missing path gave no error")
	}
}

// The example of docs/rule-tests.md runs and passes, against the built-in
// ruleset.
func TestDocsExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/rule-tests.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	src, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in docs/rule-tests.md")
	}
	src = strings.Replace(src, "rules: [../default.yaml]", "rules: [builtin]         ", 1)
	for _, r := range runFile(t, write(t, "example.yaml", src)) {
		if !r.Passed() {
			t.Errorf("%s: %s\n%s", r.Test.Pos, r.Test.Name, r.Report())
		}
	}
}

// New stream fields feed the tracker as a server's would: the runner reads
// each waiting node's oldest message (an exact time lag), and limits move
// the stream's first sequence.
func TestStreamsAndTimeLag(t *testing.T) {
	const rulesFile = `version: 1
name: t
rules:
  - name: old-work
    when: node.timeLagSeconds >= 5 && !node.timeLagEstimated
    emit: node.down
    pattern: old-work
    level: warning
  - name: lost
    when: node.messagesLost >= 30
    emit: node.down
    pattern: lost
    level: critical
    priority: 1
`
	path := write(t, "t.yaml", `rules: [r.yaml]
tests:
  - name: a node that takes one message a second
    streams:
      S: 0+10x20
    nodes:
      n1: {delivered: 0+1x20, pending: 0+9x20}
    expect:
      # At 6s its oldest unfinished message, 7, was published at 1s.
      - {at: 6s, type: node.down, node: n1, pattern: old-work}
  - name: a limit removes what it never took
    streams:
      S: {lastSeq: 0+10x20, maxMsgs: 50}
    nodes:
      # From 6s the stream's first message is past the node: 4 lost at
      # 6s, 10 more each second.
      n1: {delivered: 0+1x20, pending: 0+9x5 50x14}
    expect:
      - {at: 9s, type: node.down, node: n1, pattern: lost}
`, "r.yaml", rulesFile)
	for _, r := range runFile(t, path) {
		if !r.Passed() {
			t.Errorf("%s:\n%s", r.Test.Name, r.Report())
		}
	}
}

func TestStreamRunDerivesFirst(t *testing.T) {
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	for _, tc := range []struct {
		name   string
		spec   streamSpec
		floors []uint64
		want   []uint64 // first sequence at each tick
	}{
		{"no limits", streamSpec{retention: retentionLimits}, nil, []uint64{0, 1, 1, 1, 1}},
		{"max msgs", streamSpec{retention: retentionLimits, maxMsgs: 15}, nil, []uint64{0, 1, 6, 16, 26}},
		{"max msgs, discard new", streamSpec{retention: retentionLimits, maxMsgs: 15, discardNew: true}, nil, []uint64{0, 1, 1, 1, 1}},
		// Message s was published at tick ceil(s/10); kept while at most 2s old.
		{"max age", streamSpec{retention: retentionLimits, maxAge: 2 * time.Second}, nil, []uint64{0, 1, 1, 1, 11}},
		{"interest: past what every node acked", streamSpec{retention: retentionInterest}, []uint64{3, 7}, []uint64{0, 4, 4, 4, 4}},
		{"work queue without nodes: nothing kept", streamSpec{retention: retentionWorkQueue}, nil, []uint64{0, 11, 21, 31, 41}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := tc.spec
			sp.name = "S"
			sp.values, _ = ParseSeries("0+10x4")
			r := &streamRun{spec: &sp}
			for i, want := range tc.want {
				r.note(i, at(i))
				r.floors = append(r.floors, tc.floors...)
				ss, ok := r.sample(i, at(i))
				if !ok || ss.FirstSeq != want {
					t.Fatalf("tick %d: first %d, want %d", i, ss.FirstSeq, want)
				}
				if ss.Msgs != max(ss.LastSeq+1, ss.FirstSeq)-ss.FirstSeq && ss.FirstSeq > 0 {
					t.Fatalf("tick %d: %d messages from %d to %d", i, ss.Msgs, ss.FirstSeq, ss.LastSeq)
				}
			}
			if got := r.publishedAt(25); !got.Equal(at(3)) {
				t.Errorf("message 25 published at %v, want %v", got, at(3))
			}
		})
	}
}
