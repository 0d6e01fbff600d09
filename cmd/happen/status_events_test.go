package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiWorld is a real server, an engine running in this process with the
// built-in rules, and a stream whose nodes have workers.
type apiWorld struct {
	t       *testing.T
	url     string
	eng     *engine.Engine
	workers map[string]*testutil.Worker
}

// newAPIWorld starts the server (adjusted by mods) and the engine; the
// engine connects with opts.
func newAPIWorld(t *testing.T, mods []func(*server.Options), opts ...nats.Option) *apiWorld {
	t.Helper()
	srv := testutil.RunServer(t, mods...)
	w := &apiWorld{t: t, url: srv.ClientURL(), workers: map[string]*testutil.Worker{}}
	set, err := loadRules("", rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	w.eng = engine.New(testutil.Connect(t, w.url, opts...), set, engine.Config{Interval: 250 * time.Millisecond, Logger: log, Instance: "cli"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.eng.Run(ctx); err != nil {
			t.Errorf("engine run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// addNodes creates a stream and one consumer per id (metadata node id and
// group), each worked by a worker when work is true.
func (w *apiWorld) addNodes(streamName string, work bool, groupOf map[string]string, opts ...nats.Option) {
	w.t.Helper()
	js := testutil.JetStream(w.t, testutil.Connect(w.t, w.url, opts...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := strings.ToLower(streamName)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName, Subjects: []string{subj + ".>"}}); err != nil {
		w.t.Fatal(err)
	}
	for id, group := range groupOf {
		if _, err := js.CreateOrUpdateConsumer(ctx, streamName, jetstream.ConsumerConfig{
			Durable: id, AckPolicy: jetstream.AckExplicitPolicy,
			Metadata: map[string]string{"happen.group": group},
		}); err != nil {
			w.t.Fatal(err)
		}
		if work {
			w.workers[id] = testutil.StartWorker(w.t, w.url, streamName, id)
		}
	}
}

func (w *apiWorld) waitNodes(n int) {
	w.t.Helper()
	testutil.Eventually(w.t, 15*time.Second, func() bool {
		st := w.eng.Status()
		return st.Healthy && len(st.Nodes) == n
	}, "the engine sees %d nodes", n)
}

// cli is a happen command running in the background.
type cli struct {
	cmd            *exec.Cmd
	stdout, stderr testutil.LogBuffer
	done           chan error
}

func startCLI(t *testing.T, env []string, args ...string) *cli {
	t.Helper()
	c := &cli{cmd: exec.Command(happenBin, args...), done: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("happen %v\nstdout:\n%s\nstderr:\n%s", args, c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

// following waits until happen events has subscribed.
func (c *cli) following(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() bool { return strings.Contains(c.stderr.String(), "following ") },
		"happen %v subscribes; stderr: %s", c.cmd.Args[1:], c.stderr.String())
}

// wait waits for the command to exit and returns its exit code.
func (c *cli) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-c.done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("happen %v: %v", c.cmd.Args[1:], err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("happen %v did not exit within %v; stdout:\n%s\nstderr:\n%s", c.cmd.Args[1:], within, c.stdout.String(), c.stderr.String())
		return -1
	}
}

func statusJSON(t *testing.T, env []string, args ...string) engine.Status {
	t.Helper()
	out, errOut, code := run(t, env, append([]string{"status", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("status %v: exit %d\n%s", args, code, errOut)
	}
	var st engine.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status %v -o json: %v\n%s", args, err, out)
	}
	return st
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func nodeIDs(st engine.Status) []string {
	var ids []string
	for _, n := range st.Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// rows returns the lines of the first table in a status text output, the
// header first.
func rows(out string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "NODE ") {
			got = append(got, l)
			continue
		}
		if len(got) > 0 {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "... ") {
				break
			}
			got = append(got, l)
		}
	}
	return got
}

// One engine, one killed node: what happen status and happen events show
// of it, from another process, over NATS only.
func TestStatusAndEventsOverNATS(t *testing.T) {
	w := newAPIWorld(t, nil)
	w.addNodes("ORDERS", true, map[string]string{"orders-eu-1": "eu", "orders-eu-2": "eu", "orders-us-1": "us"})
	w.addNodes("IDLE", false, map[string]string{"idle-0": "idle", "idle-1": "idle", "idle-2": "idle", "idle-3": "idle"})
	testutil.StartPublisher(t, w.url, "orders", 20)
	w.waitNodes(7)
	testutil.Eventually(t, 15*time.Second, func() bool { return w.workers["orders-eu-1"].Acks() > 20 }, "orders-eu-1 consumes")
	srv := []string{"-s", w.url}

	// Every node, as a table and as JSON.
	out, errOut, code := run(t, nil, append([]string{"status"}, srv...)...)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, errOut)
	}
	if !strings.HasPrefix(out, "engine ok · sampled ") || !strings.Contains(out, "7 nodes") {
		t.Errorf("status header:\n%s", out)
	}
	table := rows(out)
	if len(table) != 8 || !strings.Contains(table[0], "WAITING") || !strings.Contains(table[0], "CADENCE/STALL") {
		t.Fatalf("node table:\n%s", out)
	}
	for _, id := range []string{"orders-eu-1", "orders-eu-2", "orders-us-1", "idle-0", "idle-3"} {
		if !strings.Contains(out, "\n"+id+" ") {
			t.Errorf("status lacks node %s:\n%s", id, out)
		}
	}
	for _, want := range []string{"\nGROUP ", "\neu ", "\nidle ", "\nus ", "no open incidents"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	st := statusJSON(t, nil, srv...)
	if st.Total != 7 || len(st.Nodes) != 7 || !st.Healthy || len(st.Groups) != 3 {
		t.Fatalf("status -o json: total %d, nodes %v, groups %v", st.Total, nodeIDs(st), st.Groups)
	}

	// Paging: more nodes than one page, every one fetched once.
	paged := statusJSON(t, nil, append(srv, "--page-size", "2")...)
	if fmt.Sprint(sorted(nodeIDs(paged))) != fmt.Sprint(sorted(nodeIDs(st))) || paged.Total != 7 || len(paged.Groups) != 3 {
		t.Fatalf("paged by 2: %v, want %v; groups %v", nodeIDs(paged), nodeIDs(st), paged.Groups)
	}
	limited := statusJSON(t, nil, append(srv, "--page-size", "2", "--limit", "3")...)
	if len(limited.Nodes) != 3 || limited.Total != 7 {
		t.Fatalf("--limit 3: %v of %d", nodeIDs(limited), limited.Total)
	}
	out, _, _ = run(t, nil, append([]string{"status", "--limit", "3"}, srv...)...)
	if len(rows(out)) != 4 || !strings.Contains(out, "... and 4 more") {
		t.Fatalf("--limit 3 text:\n%s", out)
	}
	if eu := statusJSON(t, nil, append(srv, "--group", "eu")...); eu.Total != 2 || len(eu.Nodes) != 2 {
		t.Fatalf("--group eu: %v", nodeIDs(eu))
	}

	// --watch redraws until interrupted, then exits 0.
	watch := startCLI(t, nil, append([]string{"status", "--watch", "--interval", "200ms"}, srv...)...)
	testutil.Eventually(t, 15*time.Second, func() bool { return strings.Count(watch.stdout.String(), "engine ok ·") >= 2 },
		"status --watch redraws")
	watch.cmd.Process.Signal(os.Interrupt)
	if code := watch.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("status --watch after SIGINT: exit %d", code)
	}

	// Followers started before the failure: one for node.down lines, one
	// for raw envelopes, and one for a node that stays healthy.
	downs := startCLI(t, nil, append([]string{"events", "--count", "1", "--type", "node.down"}, srv...)...)
	raw := startCLI(t, nil, append([]string{"events", "--count", "1", "--type", "system.*,node.*", "-o", "json"}, srv...)...)
	other := startCLI(t, nil, append([]string{"events", "--node", "orders-us-1", "--type", "node.down"}, srv...)...)
	for _, c := range []*cli{downs, raw, other} {
		c.following(t)
	}

	w.workers["orders-eu-1"].Kill()
	if code := downs.wait(t, 45*time.Second); code != 0 {
		t.Fatalf("events --count 1: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(downs.stdout.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], " node.down ") || !strings.Contains(lines[0], " orders-eu-1 ") ||
		!strings.Contains(lines[0], " node-failure ") || !strings.Contains(lines[0], " critical ") || strings.Contains(lines[0], "\x1b[") {
		t.Fatalf("events line: %q", lines)
	}
	if code := raw.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("events -o json: exit %d", code)
	}
	var env events.Envelope
	if err := json.Unmarshal([]byte(raw.stdout.String()), &env); err != nil || env.Type != events.TypeNodeDown || env.Context.ID == "" {
		t.Fatalf("events -o json: %v: %q", err, raw.stdout.String())
	}
	var nd events.NodeDown
	if err := env.Decode(&nd); err != nil || nd.NodeID != "orders-eu-1" || nd.Pattern != "node-failure" {
		t.Fatalf("node.down envelope: %+v %v", nd, err)
	}

	// The down node comes first, with its pattern, and healthy ones are left out.
	testutil.Eventually(t, 10*time.Second, func() bool {
		n, ok := findNode(w.eng.Status(), "orders-eu-1")
		return ok && n.State == "down"
	}, "the engine holds orders-eu-1 down")
	out, errOut, code = run(t, nil, append([]string{"status", "--trouble"}, srv...)...)
	table = rows(out)
	if code != 0 || len(table) < 2 || !strings.HasPrefix(table[1], "orders-eu-1 ") ||
		!strings.Contains(table[1], "down (critical)") || !strings.Contains(table[1], "node-failure") {
		t.Fatalf("status --trouble: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, healthy := range []string{"orders-us-1", "idle-0"} {
		if strings.Contains(strings.Join(table, "\n"), healthy) {
			t.Errorf("status --trouble lists %s:\n%s", healthy, out)
		}
	}
	if !strings.Contains(out, "INCIDENT") || !strings.Contains(out, "node-failure  critical") {
		t.Errorf("status --trouble lacks the incident:\n%s", out)
	}
	all := statusJSON(t, nil, srv...)
	if all.Nodes[0].ID != "orders-eu-1" || all.Nodes[0].Pattern != "node-failure" || all.Nodes[0].Level != "critical" {
		t.Fatalf("status -o json, first node: %+v", all.Nodes[0])
	}

	// History: what was published, from the engine's memory.
	out, errOut, code = run(t, nil, append([]string{"events", "--since", "5m", "--count", "1", "--type", "node.*"}, srv...)...)
	if code != 0 || !strings.Contains(out, " node.down ") || !strings.Contains(out, " orders-eu-1 ") {
		t.Fatalf("events --since 5m: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = run(t, nil, append([]string{"events", "--since", "5m", "--count", "1", "--pattern", "node-failure", "-o", "json"}, srv...)...)
	var hist events.Envelope
	if code != 0 || json.Unmarshal([]byte(out), &hist) != nil || hist.Context.ID != env.Context.ID {
		t.Fatalf("events --since -o json: exit %d, %q, want the envelope %s", code, out, env.Context.ID)
	}

	// The healthy node's follower saw nothing, and stops on SIGINT.
	if s := other.stdout.String(); s != "" {
		t.Fatalf("events --node orders-us-1 printed %q", s)
	}
	other.cmd.Process.Signal(os.Interrupt)
	if code := other.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("events after SIGINT: exit %d", code)
	}
}

func findNode(st *engine.Status, id string) (engine.NodeStatus, bool) {
	for _, n := range st.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return engine.NodeStatus{}, false
}

// A nats CLI context gives the server and credentials; flags override it.
func TestStatusWithNATSContext(t *testing.T) {
	auth := func(o *server.Options) { o.Username, o.Password = "ops", "s3cret" }
	w := newAPIWorld(t, []func(*server.Options){auth}, nats.UserInfo("ops", "s3cret"))
	w.addNodes("ORDERS", false, map[string]string{"a": "eu"}, nats.UserInfo("ops", "s3cret"))
	w.waitNodes(1)

	cfg := t.TempDir()
	dir := filepath.Join(cfg, "nats", "context")
	os.MkdirAll(dir, 0o700)
	ctx, _ := json.Marshal(map[string]string{"description": "test", "url": w.url, "user": "ops", "password": "s3cret"})
	os.WriteFile(filepath.Join(dir, "prod.json"), ctx, 0o600)
	dead := fmt.Sprintf("nats://127.0.0.1:%d", testutil.FreePort(t))
	env := []string{"XDG_CONFIG_HOME=" + cfg, "NATS_URL=" + dead, "NATS_CONTEXT="}

	if st := statusJSON(t, env, "--context", "prod"); len(st.Nodes) != 1 || st.Nodes[0].ID != "a" {
		t.Fatalf("--context prod: %v", nodeIDs(st))
	}
	// The selected context is the default.
	if _, errOut, code := run(t, env, "status", "--timeout", "1s"); code != 1 || !strings.Contains(errOut, "connect to NATS "+dead) {
		t.Fatalf("no context selected: exit %d, want 1 and $NATS_URL tried\n%s", code, errOut)
	}
	os.WriteFile(filepath.Join(cfg, "nats", "context.txt"), []byte("prod\n"), 0o600)
	if st := statusJSON(t, env); len(st.Nodes) != 1 {
		t.Fatalf("selected context: %v", nodeIDs(st))
	}
	// A flag wins over the context.
	_, errOut, code := run(t, env, "status", "--password", "wrong")
	if code != 1 || !strings.Contains(errOut, "connect to NATS") || !strings.Contains(strings.ToLower(errOut), "authorization") {
		t.Fatalf("--password wrong: exit %d\n%s", code, errOut)
	}
	_, errOut, code = run(t, env, "status", "--context", "missing")
	if code != 1 || !strings.Contains(errOut, `nats context "missing"`) {
		t.Fatalf("--context missing: exit %d\n%s", code, errOut)
	}
}

// Nobody answers: exit 1 at once, saying where it asked and what to check.
func TestStatusWithoutEngine(t *testing.T) {
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	start := time.Now()
	_, errOut, code := run(t, nil, "status", "-s", url, "--timeout", "3s")
	want := "no happen engine answered on happen.events.api.status at " + url + ": is one running with --subject-prefix happen.events?"
	if code != 1 || strings.TrimSpace(errOut) != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, errOut, want)
	}
	if d := time.Since(start); d > 3*time.Second+2*time.Second {
		t.Fatalf("took %v with --timeout 3s", d)
	}
	// happen events says there is no history, and follows live events
	// for when an engine starts.
	ev := startCLI(t, nil, "events", "-s", url, "--subject-prefix", "other.events", "--since", "1m", "--timeout", "1s")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(ev.stderr.String(), "no history: no happen engine answered on other.events.api.events at "+url)
	}, "events --since without an engine says so")
	select {
	case err := <-ev.done:
		t.Fatalf("events exited without an engine: %v", err)
	default:
	}

	// No server at all.
	dead := fmt.Sprintf("nats://127.0.0.1:%d", testutil.FreePort(t))
	_, errOut, code = run(t, nil, "status", "-s", dead, "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "connect to NATS "+dead) {
		t.Fatalf("no server: exit %d, stderr %q", code, errOut)
	}
}

// With system access, servers gone and routes lost show under the header;
// without it, or with nothing to say, no line.
func TestPrintStatusServerSignals(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		sys  engine.Status
		want string
	}{
		{"no system access", engine.Status{Healthy: true}, ""},
		{"nothing down", engine.Status{Healthy: true, System: flowSystem(true, 0, 0, 0)}, ""},
		{"a server announced its shutdown", engine.Status{Healthy: true, System: flowSystem(true, 1, 1, 0)}, "servers: 1 server down (1 announced), 0 routes lost\n"},
		{"a cut", engine.Status{Healthy: true, System: flowSystem(true, 0, 0, 2)}, "servers: 0 servers down (0 announced), 2 routes lost\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, &tc.sys, now)
			got := ""
			for _, line := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(line, "servers:") {
					got += line + "\n"
				}
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q\n%s", got, tc.want, b.String())
			}
		})
	}
}

func flowSystem(signals bool, down, announced, routes int) flow.System {
	return flow.System{ServerSignals: signals, ServersDown: down, ServersAnnouncedDown: announced, RoutesLost: routes}
}
