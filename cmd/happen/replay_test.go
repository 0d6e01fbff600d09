package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rulesets"
	"github.com/nats-io/nats.go/jetstream"
)

// fixture is a real recording: a node killed and restarted (see
// testdata/node-failure.README.md for how it is made).
const fixture = "testdata/node-failure.rec"

func TestReplayPrintsTheEvents(t *testing.T) {
	out, errOut, code := run(t, nil, "replay", fixture)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "node.down   node=eu-2 pattern=node-failure rule=node-failure level=critical incident=#1") ||
		!strings.Contains(lines[1], "node.up     node=eu-2 pattern=node-failure rule=node-failure down=") || !strings.HasSuffix(lines[1], "incident=#1") {
		t.Fatalf("output:\n%s", out)
	}
	// Each line starts with the tick's time and its offset from the start.
	f := strings.Fields(lines[0])
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", f[0]); err != nil || !strings.HasPrefix(f[1], "+") || !strings.HasSuffix(f[1], "s") {
		t.Fatalf("time and offset %q %q: %v", f[0], f[1], err)
	}
	if !strings.Contains(errOut, "replayed 15 ticks (0 blind)") || !strings.Contains(errOut, "2 events under builtin") {
		t.Fatalf("stderr:\n%s", errOut)
	}

	// The same through a ruleset file, as JSON.
	rulesFile := filepath.Join(t.TempDir(), "default.yaml")
	os.WriteFile(rulesFile, rulesets.Default, 0o644)
	out, errOut, code = run(t, nil, "replay", "--rules", rulesFile, "-o", "json", fixture)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			At, Type, NodeID, Pattern, Incident string
			Offset                              float64
			AffectedNodes                       []string
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		if e.NodeID != "eu-2" || e.Pattern != "node-failure" || e.Incident != "#1" || e.Offset <= 0 || e.At == "" {
			t.Fatalf("event %s", l)
		}
		types = append(types, e.Type)
	}
	if strings.Join(types, " ") != "node.down node.up" {
		t.Fatalf("types %v", types)
	}
}

func TestReplayDiff(t *testing.T) {
	dir := t.TempDir()
	// The node-failure rule made to need an hour: its incident goes.
	old := "    for: 1s\n    keepFiringFor: 2s\n    emit: node.down\n    pattern: node-failure\n"
	if !strings.Contains(string(rulesets.Default), old) {
		t.Fatal("the built-in node-failure rule is not where this test looks for it")
	}
	slow := filepath.Join(dir, "slow.yaml")
	os.WriteFile(slow, []byte(strings.Replace(string(rulesets.Default), old, strings.Replace(old, "for: 1s", "for: 1h", 1), 1)), 0o644)

	out, errOut, code := run(t, nil, "replay", "--diff", slow, fixture)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (they differ)\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "- ") || !strings.Contains(lines[0], "node.down   node=eu-2 pattern=node-failure") ||
		!strings.HasPrefix(lines[1], "- ") || !strings.Contains(lines[1], "node.up     node=eu-2 pattern=node-failure") ||
		lines[2] != "2 events only under builtin (-), 0 only under "+slow+" (+), 0 alike" {
		t.Fatalf("diff:\n%s", out)
	}
	// The other way round the events are added.
	out, _, code = run(t, nil, "replay", "--rules", slow, "--diff", "builtin", "-o", "json", fixture)
	if code != 1 || strings.Count(out, `{"op":"+","at":`) != 2 || strings.Contains(out, `"op":"-"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	out, _, code = run(t, nil, "replay", "--diff", "builtin", fixture)
	if code != 0 || strings.TrimSpace(out) != "no change: 2 events alike under builtin and builtin" {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Trouble is 2, as for diff(1).
	if _, errOut, code := run(t, nil, "replay", "--diff", filepath.Join(dir, "missing.yaml"), fixture); code != 2 {
		t.Fatalf("missing ruleset: exit %d\n%s", code, errOut)
	}
	if _, _, code := run(t, nil, "replay", "--diff", slow, filepath.Join(dir, "missing.rec")); code != 2 {
		t.Fatalf("missing recording: exit %d", code)
	}
}

func TestReplayToTestPassesRulesTest(t *testing.T) {
	dir := t.TempDir()
	test := filepath.Join(dir, "tests", "node-failure.yaml")
	os.Mkdir(filepath.Dir(test), 0o755)
	rulesFile := filepath.Join(dir, "rules", "default.yaml")
	os.Mkdir(filepath.Dir(rulesFile), 0o755)
	os.WriteFile(rulesFile, rulesets.Default, 0o644)

	out, errOut, code := run(t, nil, "replay", "--to-test", test, "--rules", rulesFile, fixture)
	if code != 0 || !strings.Contains(out, test+": 1 test, 15 ticks, 6 nodes, 2 events expected") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "differences") {
		t.Errorf("the test parts from the recording:\n%s", errOut)
	}
	raw, _ := os.ReadFile(test)
	for _, want := range []string{
		"rules: [\"../rules/default.yaml\"]\n",
		"type: node.down, node: eu-2, pattern: node-failure, rule: node-failure, level: critical, group: eu, nodes: [eu-2], incident: i1}",
		"type: node.up, node: eu-2, pattern: node-failure, rule: node-failure, reason: cleared, incident: i1}",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("test file lacks %q:\n%s", want, raw)
		}
	}
	out, errOut, code = run(t, nil, "rules", "test", test)
	if code != 0 || !strings.Contains(out, "1 tests passed") {
		t.Fatalf("rules test: exit %d\n%s%s", code, out, errOut)
	}

	if _, errOut, code := run(t, nil, "replay", "--to-test", test, "--diff", "builtin", fixture); code != 2 || !strings.Contains(errOut, "do not go together") {
		t.Fatalf("--to-test with --diff: exit %d\n%s", code, errOut)
	}
}

func TestReplayRefusesACorruptRecording(t *testing.T) {
	raw, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	bad := filepath.Join(t.TempDir(), "bad.rec")
	os.WriteFile(bad, []byte(lines[0]+lines[1]+"{\"t\":12,\"c\":[}\n"+lines[2]), 0o644)
	if _, errOut, code := run(t, nil, "replay", bad); code != 1 || !strings.Contains(errOut, bad+":3: corrupt recording") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}

	// An engine killed mid-write leaves a partial last line: a warning.
	cut := filepath.Join(t.TempDir(), "cut.rec")
	os.WriteFile(cut, raw[:len(raw)-100], 0o644)
	if _, errOut, code := run(t, nil, "replay", cut); code != 0 || !strings.Contains(errOut, "warning: "+cut+":16: last line cut short") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if _, errOut, code := run(t, nil, "replay", "-o", "yaml", fixture); code != 2 {
		t.Fatalf("-o yaml: exit %d\n%s", code, errOut)
	}
}

// happen engine --record (here from HAPPEN_RECORD) records every tick, and
// the recording replays.
func TestEngineRecords(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "flow.rec")
	p := startEngine(t, []string{"HAPPEN_RECORD=" + rec, "HAPPEN_INTERVAL=200ms"}, "--record-max-size", "1MB", "--record-files", "2")
	nc := testutil.Connect(t, p.natsURL)
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		raw, _ := os.ReadFile(rec)
		return strings.Count(string(raw), `"c":"c1"`) >= 3
	}, "three ticks with the consumer recorded")
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("engine exit after SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("engine did not stop on SIGTERM")
	}
	if !strings.Contains(p.log(), "recording every sample") {
		t.Errorf("no log of the recording:\n%s", p.log())
	}
	raw, _ := os.ReadFile(rec)
	if !strings.HasPrefix(string(raw), `{"happen":"recording","v":1,"interval":"200ms",`) || !strings.HasSuffix(string(raw), "\n") {
		t.Fatalf("recording:\n%s", raw)
	}
	out, errOut, code := run(t, nil, "replay", rec)
	if code != 0 || out != "" || !strings.Contains(errOut, "0 events under builtin") {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}

	if _, errOut, code := run(t, nil, "engine", "--record", rec, "--record-max-size", "1KB", "--http", "off", "--embedded-listen", "127.0.0.1:0", "--data", t.TempDir()); code != 2 || !strings.Contains(errOut, "--record-max-size 1KB") {
		t.Fatalf("tiny --record-max-size: exit %d\n%s", code, errOut)
	}
}
