package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/happen-dev/happen/sdk/pluginhost"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// build compiles the three plugins once per test binary.
func build(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugin executables")
	}
	buildOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		for _, p := range []string{"backpressure", "partition-mode", "alerting"} {
			cmd := exec.Command("go", "build", "-ldflags", "-X main.version=e2e",
				"-o", filepath.Join(dir, "happen-plugin-"+p), "github.com/happen-dev/happen/plugins/"+p)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = errors.New("build " + p + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	host sdk.Host
}

func setup(t *testing.T) *env {
	t.Helper()
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	return &env{nc: nc, js: js, host: hostapi.New(nc)}
}

func start(t *testing.T, e *env, name string) *pluginhost.Plugin {
	t.Helper()
	dir := build(t)
	p, err := pluginhost.Start(ctxT(t), pluginhost.Config{Path: filepath.Join(dir, "happen-plugin-"+name), Host: e.host})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(p.Kill)
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func envelope(t *testing.T, typ, id string, payload any) events.Envelope {
	t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Payload: p, Context: events.Context{
		ID: id, Timestamp: 1732400000000, Sender: "happen-engine/e2e", CorrelationID: "inc-" + id,
	}}
}

func TestBackpressureProcess(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "orders-eu-1", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.nc.SubscribeSync("happen.control.backpressure.orders-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := start(t, e, "backpressure")

	d, err := p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil || d.Name != "backpressure" || d.Version != "e2e" {
		t.Fatalf("describe: %+v %v", d, err)
	}
	down := envelope(t, events.TypeNodeDown, "d1", events.NodeDown{
		NodeID: "orders-eu-1", Pattern: "bottleneck", Rule: "bottleneck", Stream: "ORDERS", Consumer: "orders-eu-1",
		LagMetrics: events.LagMetrics{AckRate: 20},
	})
	// Numbers cross the protocol as JSON: 10 arrives as a float64.
	with := map[string]any{"factor": 0.5, "maxAckPending": 10}
	if _, err := p.Execute(ctx, &sdk.ExecuteRequest{Event: down, Down: down, Rule: "bottleneck", With: with, IdempotencyKey: "k1"}); err != nil {
		t.Fatalf("execute: %v", err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var dir struct {
		Action string  `json:"action"`
		Rate   float64 `json:"rate"`
	}
	if err := json.Unmarshal(m.Data, &dir); err != nil || dir.Action != "throttle" || dir.Rate != 10 {
		t.Fatalf("directive %s: %v", m.Data, err)
	}
	if got := maxAckPending(t, e); got != 10 {
		t.Fatalf("max_ack_pending = %d", got)
	}
	up := envelope(t, events.TypeNodeUp, "u1", events.NodeUp{NodeID: "orders-eu-1", Pattern: "bottleneck", Rule: "bottleneck"})
	if _, err := p.Undo(ctx, &sdk.ExecuteRequest{Event: up, Down: down, Rule: "bottleneck", With: with, Resolve: true, IdempotencyKey: "k2"}); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if got := maxAckPending(t, e); got != 1000 {
		t.Fatalf("max_ack_pending = %d after undo", got)
	}

	// A refusal reaches the engine as permanent, with the plugin's words.
	bad := envelope(t, events.TypeNodeDown, "d2", events.NodeDown{NodeID: "orders.eu"})
	_, err = p.Execute(ctx, &sdk.ExecuteRequest{Event: bad, Down: bad})
	var ae *pluginhost.ActionError
	if !errors.As(err, &ae) || !ae.Permanent || !strings.Contains(ae.Message, "cannot be a subject token") {
		t.Fatalf("bad node id: %v", err)
	}
}

func maxAckPending(t *testing.T, e *env) int {
	t.Helper()
	c, err := e.js.Consumer(ctxT(t), "ORDERS", "orders-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Config.MaxAckPending
}

func TestPartitionModeProcess(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	p := start(t, e, "partition-mode")
	down := envelope(t, events.TypeNodeDown, "d1", events.NodeDown{
		NodeID: "eu-1", Pattern: "partition", Rule: "partition", AffectedNodes: []string{"eu-1", "eu-2"},
	})
	if _, err := p.Execute(ctx, &sdk.ExecuteRequest{Event: down, Down: down, Rule: "partition", With: map[string]any{"queueRemoteOperations": false}}); err != nil {
		t.Fatalf("execute: %v", err)
	}
	kv, err := e.js.KeyValue(ctx, "happen_modes")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "partition")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"active":true,"isolatedNodes":["eu-1","eu-2"],"prioritizeLocalOperations":true,"queueRemoteOperations":false,"since":1732400000000}`
	if string(entry.Value()) != want {
		t.Fatalf("mode %s, want %s", entry.Value(), want)
	}
}

func TestAlertingProcess(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	bodies := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- r.Header.Get("X-Team") + " " + string(b)
	}))
	t.Cleanup(hook.Close)
	p := start(t, e, "alerting")
	d, err := p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil || d.Name != "alerting" || len(d.Params) == 0 || !d.Params[0].Secret {
		t.Fatalf("describe: %+v %v", d, err)
	}
	down := envelope(t, events.TypeNodeDown, "d1", events.NodeDown{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", Level: "critical", AffectedNodes: []string{"orders-eu-1"},
	})
	with := map[string]any{"url": hook.URL, "format": "slack", "headers": map[string]any{"X-Team": "ops"}}
	if _, err := p.Execute(ctx, &sdk.ExecuteRequest{Event: down, Down: down, Rule: "node-failure", With: with, IdempotencyKey: "k1"}); err != nil {
		t.Fatalf("execute: %v", err)
	}
	select {
	case b := <-bodies:
		if !strings.HasPrefix(b, `ops {"text":"[CRITICAL] node-failure on orders-eu-1`) {
			t.Fatalf("got %s", b)
		}
	case <-ctx.Done():
		t.Fatal("no webhook call")
	}
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "happen-e2e-plugins-") }

// TestMain removes the executables the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}
