package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// These tests run the real binary, as an operator would.

var happenBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "happen-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	happenBin = filepath.Join(dir, "happen")
	// The built-in plugins go beside the binary, as `make build` puts them,
	// which is where the engine looks by default.
	builds := [][2]string{{happenBin, "."}}
	for _, p := range []string{"alerting", "backpressure", "partition-mode"} {
		builds = append(builds, [2]string{filepath.Join(dir, "happen-plugin-"+p), "../../plugins/" + p})
	}
	// And the example plugin of docs/plugins.md, as `make example` builds it.
	builds = append(builds, [2]string{filepath.Join(dir, "happen-plugin-incidents"), "../../sdk/example/happen-plugin-incidents"})
	for _, b := range builds {
		out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, happenBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run happen %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "happen ") || !strings.Contains(out, "go1.") || !strings.Contains(out, "commit ") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

const badRules = `version: 1
name: bad
rules:
  - name: broken
    scope: nod
    when: node.stalled
    pattern: x
  - name: misspelt
    when: node.stalld
    pattern: x
`

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, rulesets.Default, 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(badRules), 0o644)

	out, errOut, code := run(t, nil, "rules", "check", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("good file: exit %d, %q %q", code, out, errOut)
	}
	_, errOut, code = run(t, nil, "rules", "check", good, bad)
	if code != 1 {
		t.Fatalf("bad file: exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":5:12:", bad + ":9:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, code := run(t, nil, "rules", "check", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Fatalf("missing file: exit %d, want 1", code)
	}
}

func TestRulesTest(t *testing.T) {
	dir := t.TempDir()
	test := func(at string) string {
		return `rules: [builtin]
tests:
  - name: one node stops consuming
    streams:
      ORDERS: 0+20x40
    nodes:
      eu-1:
        group: eu
        delivered:    0+20x15 300x24
        pending:      0x15 20+20x24
        waitingPulls: 1x15 0x24
      eu-2: {group: eu, delivered: 0+20x40}
      us-1: {group: us, delivered: 0+20x40}
    expect:
      - {at: ` + at + `, type: node.down, node: eu-1, pattern: node-failure, incident: a}
`
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(test("16s..25s")), 0o644)
	out, errOut, code := run(t, nil, "rules", "test", good)
	if code != 0 || !strings.Contains(out, "ok   "+good+":3:11: one node stops consuming") {
		t.Fatalf("passing test: exit %d, %q %q", code, out, errOut)
	}

	// A wrong expectation: exit 1 and a diff that names the expectation's
	// place and what was emitted instead.
	failing := filepath.Join(dir, "failing.yaml")
	os.WriteFile(failing, []byte(test("5s")), 0o644)
	out, _, code = run(t, nil, "rules", "test", dir)
	if code != 1 {
		t.Fatalf("failing test: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL " + failing + ":3:11: one node stops consuming",
		"expected, not emitted:\n    " + failing + ":15:9: at 5s: node.down node=eu-1 pattern=node-failure incident=a",
		"emitted, not expected:\n    at 17s: node.down node=eu-1 pattern=node-failure",
		"ok   " + good,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(test("16s"), "0+20x15 300x24", "0+20x15 300y24", 1)), 0o644)
	_, errOut, code = run(t, nil, "rules", "test", good, bad)
	if code != 1 || !strings.Contains(errOut, bad+":9:34: delivered: unexpected 'y'") {
		t.Fatalf("malformed file: exit %d, stderr:\n%s", code, errOut)
	}
	if out, _, code := run(t, nil, "rules", "test", "--help"); code != 0 || !strings.Contains(out, "happen rules test rulesets/tests/") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
	if _, _, code := run(t, nil, "rules", "test", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Fatalf("missing file: exit %d, want 1", code)
	}
	// The built-in ruleset's own tests, as the docs tell users to run them.
	if out, errOut, code := run(t, nil, "rules", "test", filepath.Join("..", "..", "rulesets", "tests")); code != 0 || !strings.Contains(out, " tests passed") {
		t.Fatalf("rulesets/tests: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestEngineRefusesFaultyRules(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(badRules), 0o644)
	_, errOut, code := run(t, nil, "engine", "--rules", bad, "--http", "off", "--embedded-listen", "127.0.0.1:0", "--data", t.TempDir())
	if code != 1 || !strings.Contains(errOut, bad+":5:12:") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

// engineProc is a running `happen engine`.
type engineProc struct {
	cmd     *exec.Cmd
	natsURL string
	http    string

	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

func startEngine(t *testing.T, env []string, args ...string) *engineProc {
	t.Helper()
	return launchEngine(t, "", env, args...)
}

// startEngineAt runs the engine against the NATS server at natsURL.
func startEngineAt(t *testing.T, natsURL string, env []string, args ...string) *engineProc {
	t.Helper()
	return launchEngine(t, natsURL, env, args...)
}

// launchEngine starts the binary: on an embedded server when natsURL is
// empty (waiting for it to say where it listens), else against natsURL.
func launchEngine(t *testing.T, natsURL string, env []string, args ...string) *engineProc {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	where := []string{"--embedded-listen", "127.0.0.1:0"}
	if natsURL != "" {
		where = []string{"--nats", natsURL}
	}
	args = append(append([]string{"engine", "--data", t.TempDir(), "--http", httpAddr}, where...), args...)
	p := &engineProc{cmd: exec.Command(happenBin, args...), http: "http://" + httpAddr, exited: make(chan error, 1), natsURL: natsURL}
	p.cmd.Env = append(os.Environ(), env...)
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlRe := regexp.MustCompile(`^embedded NATS listening on (nats://\S+)$`)
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := urlRe.FindStringSubmatch(line); m != nil {
				urls <- m[1]
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("engine stderr:\n%s", p.log())
		}
	})
	if natsURL != "" {
		return p
	}
	select {
	case p.natsURL = <-urls:
	case <-time.After(30 * time.Second):
		t.Fatalf("no embedded NATS URL on stderr:\n%s", p.log())
	}
	return p
}

func (p *engineProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *engineProc) get(path string) (int, string) {
	resp, err := http.Get(p.http + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEngineEmbeddedEndToEnd(t *testing.T) {
	p := startEngine(t, []string{"HAPPEN_INTERVAL=500ms"})
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, _ := p.get("/healthz")
		return code == 200
	}, "/healthz 200")

	nc := testutil.Connect(t, p.natsURL)
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
		Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{"happen.node": "orders-eu-1", "happen.group": "eu"},
	}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, body := p.get("/api/status")
		var st struct {
			Healthy bool
			Nodes   []struct {
				NodeID string `json:"nodeId"`
				Group  string `json:"group"`
				State  string `json:"state"`
			}
		}
		return json.Unmarshal([]byte(body), &st) == nil && st.Healthy && len(st.Nodes) == 1 &&
			st.Nodes[0].NodeID == "orders-eu-1" && st.Nodes[0].Group == "eu" && st.Nodes[0].State == "ok"
	}, "/api/status lists the node")
	_, metrics := p.get("/metrics")
	for _, want := range []string{`happen_samples_total{result="ok"}`, `happen_node_messages_waiting{consumer="c1",group="eu",node="orders-eu-1",stream="ORDERS"}`, "happen_rules "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("engine exit after SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("engine did not stop on SIGTERM")
	}
}

// Hot reload through the real binary: a good change takes effect, a broken
// one is refused while detection goes on, and the fix is accepted.
func TestEngineHotReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(file, rulesets.Default, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startEngine(t, nil, "--rules", dir)
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, _ := p.get("/healthz")
		return code == 200
	}, "engine running")

	nc := testutil.Connect(t, p.natsURL)
	var mu sync.Mutex
	var got []events.Envelope
	nc.Subscribe("happen.events.>", func(m *nats.Msg) {
		var env events.Envelope
		if json.Unmarshal(m.Data, &env) == nil {
			mu.Lock()
			got = append(got, env)
			mu.Unlock()
		}
	})
	nc.Flush()
	waitType := func(typ string, n int) events.Envelope {
		t.Helper()
		var last events.Envelope
		testutil.Eventually(t, 20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			c := 0
			for _, e := range got {
				if e.Type == typ {
					c++
					last = e
				}
			}
			return c >= n
		}, "%d %s", n, typ)
		return last
	}

	// A good change: write a new file in the folder, the way an editor saves
	// by rename.
	extra := strings.Replace(string(rulesets.Default), "name: default", "name: extra", 1)
	extra = regexp.MustCompile(`(?m)^  - name: (\S+)`).ReplaceAllString(extra, "  - name: extra-$1")
	tmp := filepath.Join(dir, ".extra.yaml.tmp")
	os.WriteFile(tmp, []byte(extra), 0o644)
	os.Rename(tmp, filepath.Join(dir, "extra.yaml"))
	var rl events.RulesReloaded
	waitType(events.TypeRulesReloaded, 1).Decode(&rl)
	if n := 2 * strings.Count(string(rulesets.Default), "\n  - name: "); rl.Rules != n || len(rl.Files) != 2 {
		t.Fatalf("rules.reloaded = %+v", rl)
	}

	// A broken change is refused whole.
	os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(badRules), 0o644)
	var rj events.RulesRejected
	waitType(events.TypeRulesRejected, 1).Decode(&rj)
	if !strings.HasSuffix(rj.File, "extra.yaml") || len(rj.Errors) == 0 || !strings.Contains(rj.Errors[0], ":5:12:") {
		t.Fatalf("rules.rejected = %+v", rj)
	}

	// Detection keeps working on the rules in force.
	wa := ordersWorkload(t, p.natsURL)
	wa.Kill()
	var down events.NodeDown
	waitType(events.TypeNodeDown, 1).Decode(&down)
	// extra.yaml loads first, so at equal priority its copy of the rule is
	// the one in force: proof the reloaded set, not the first, is running.
	if down.NodeID != "a" || down.Pattern != "node-failure" || down.Rule != "extra-node-failure" {
		t.Fatalf("node.down = %+v", down)
	}

	// The fix is accepted.
	os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(extra), 0o644)
	waitType(events.TypeRulesReloaded, 2).Decode(&rl)
	if n := 2 * strings.Count(string(rulesets.Default), "\n  - name: "); rl.Rules != n {
		t.Fatalf("rules.reloaded after the fix = %+v", rl)
	}
}

// The whole loop, as a user runs it: real traffic, a node that dies, the
// built-in rules' alerting action and the docs' example plugin run in their
// real plugin processes, and the resolve delivered when the node comes back.
func TestEngineRunsPluginActionsEndToEnd(t *testing.T) {
	hook := newWebhook(t)
	posted := func(typ string) *events.Envelope {
		if got := hook.ofType(typ); len(got) > 0 {
			return &got[0]
		}
		return nil
	}

	// The built-in rules, with the example plugin added to node-failure.
	withExample := strings.Replace(string(rulesets.Default), "    priority: 20\n    actions:\n",
		"    priority: 20\n    actions:\n      - plugin: incidents\n        with: { subject: ops.incidents }\n", 1)
	if withExample == string(rulesets.Default) {
		t.Fatal("node-failure's actions not found in the built-in rules")
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rulesFile, []byte(withExample), 0o644)

	p := startEngine(t, []string{"HAPPEN_ALERT_WEBHOOK=" + hook.URL, "HAPPEN_ALERT_FORMAT=json"}, "--rules", rulesFile)
	nc := testutil.Connect(t, p.natsURL)
	summaries, err := nc.SubscribeSync("ops.incidents")
	if err != nil {
		t.Fatal(err)
	}
	wa := ordersWorkload(t, p.natsURL)

	wa.Kill()
	testutil.Eventually(t, 30*time.Second, func() bool { return posted(events.TypeNodeDown) != nil },
		"the alerting plugin posts the node.down; engine log:\n%s", p.log())
	down := posted(events.TypeNodeDown)
	var nd events.NodeDown
	down.Decode(&nd)
	if nd.NodeID != "a" || nd.Pattern != "node-failure" {
		t.Fatalf("posted node.down = %+v", nd)
	}

	wa.Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return posted(events.TypeNodeUp) != nil },
		"the resolve is posted when the node is back")
	if up := posted(events.TypeNodeUp); up.Context.CorrelationID != down.Context.CorrelationID {
		t.Fatalf("posted node.up %+v does not end the incident %+v", up.Context, down.Context)
	}
	// The example plugin summarised the incident when it opened and ended,
	// and keeps its record in KV.
	for _, want := range []string{`"status":"open"`, `"status":"resolved"`} {
		m, err := summaries.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("incidents summary %s: %v", want, err)
		}
		if !strings.Contains(string(m.Data), want) || !strings.Contains(string(m.Data), down.Context.CorrelationID) {
			t.Fatalf("summary %s, want %s for incident %s", m.Data, want, down.Context.CorrelationID)
		}
	}
	kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer kcancel()
	kv, err := testutil.JetStream(t, nc).KeyValue(kctx, "happen_incidents")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(kctx, down.Context.CorrelationID); err != nil {
		t.Fatalf("incident record: %v", err)
	}
	if strings.Contains(p.log(), hook.URL) {
		t.Fatal("the webhook URL, a secret from the environment, appears in the engine log")
	}
}

// An engine started before its NATS server is blind, not broken: it waits,
// says so on /healthz, and starts watching once the server is up.
func TestEngineStartedBeforeNATS(t *testing.T) {
	port := testutil.FreePort(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cmd := exec.Command(happenBin, "engine", "--http", httpAddr)
	cmd.Env = append(os.Environ(), fmt.Sprintf("HAPPEN_NATS=nats://127.0.0.1:%d", port), "HAPPEN_INTERVAL=250ms")
	var stderr testutil.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("engine stderr:\n%s", stderr.String())
		}
	})
	p := &engineProc{http: "http://" + httpAddr}
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, body := p.get("/healthz")
		return code == 503 && strings.Contains(body, "not connected")
	}, "/healthz 503 while NATS is not there")

	opts := testutil.ServerOptions(t)
	opts.Port = port
	testutil.StartServer(t, opts)
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, _ := p.get("/healthz")
		return code == 200
	}, "/healthz 200 once NATS is up")

	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("engine did not stop on SIGINT")
	}
}

// webhook records the envelopes the alerting plugin POSTs to its URL.
type webhook struct {
	URL   string
	mu    sync.Mutex
	posts []events.Envelope
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env events.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.posts = append(h.posts, env)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// ofType returns the envelopes of type typ posted so far.
func (h *webhook) ofType(typ string) []events.Envelope {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []events.Envelope
	for _, e := range h.posts {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// ordersWorkload makes the stream ORDERS with nodes a and b, each worked
// by a worker, and 20 msgs/s published, and waits until a consumes. It
// returns a's worker, for a test to kill.
func ordersWorkload(t *testing.T, url string) *testutil.Worker {
	t.Helper()
	js := testutil.JetStream(t, testutil.Connect(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: id, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	wa := testutil.StartWorker(t, url, "ORDERS", "a")
	testutil.StartWorker(t, url, "ORDERS", "b")
	testutil.StartPublisher(t, url, "orders", 20)
	testutil.Eventually(t, 15*time.Second, func() bool { return wa.Acks() > 50 }, "worker a consumes")
	return wa
}
