package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// binary is the plugin TestMain builds, as an operator would.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "happen-example-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "happen-plugin-incidents")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func envelope(t *testing.T, typ, id string, ts int64, payload any) events.Envelope {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Payload: raw, Context: events.Context{
		ID: id, Timestamp: ts, Sender: "happen-engine/test", CorrelationID: "inc-1",
	}}
}

func TestIncidentLifecycle(t *testing.T) {
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	sub, err := nc.SubscribeSync("ops.incidents")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, pluginhost.Config{Path: binary, Host: hostapi.New(nc)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()

	d, err := p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil || d.Name != "incidents" || len(d.Params) != 2 {
		t.Fatalf("describe = %+v, %v", d, err)
	}

	down := envelope(t, events.TypeNodeDown, "ev-down", 1000, events.NodeDown{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", Level: "critical",
		AffectedNodes: []string{"orders-eu-1"},
	})
	with := map[string]any{"bucket": "incidents_test", "subject": "ops.incidents"}
	fire := &sdk.ExecuteRequest{Event: down, Down: down, Rule: "node-failure", With: with, IdempotencyKey: "ev-down/incidents/0/execute"}
	r, err := p.Execute(ctx, fire)
	if err != nil || r.Message != "incident inc-1 opened" {
		t.Fatalf("execute = %+v, %v", r, err)
	}
	want := Summary{Incident: "inc-1", Status: "open", Text: "node-failure (node-failure, critical) on orders-eu-1"}
	if got := nextSummary(t, sub); got != want {
		t.Fatalf("summary = %+v, want %+v", got, want)
	}
	inc := record(t, js)
	if inc.Status != "open" || inc.NodeID != "orders-eu-1" || inc.Since != 1000 || inc.DownEventID != "ev-down" {
		t.Fatalf("record = %+v", inc)
	}

	// A retry of the same request changes nothing and says so.
	if r, err := p.Execute(ctx, fire); err != nil || r.Message != "incident inc-1 already recorded" {
		t.Fatalf("retry = %+v, %v", r, err)
	}

	up := envelope(t, events.TypeNodeUp, "ev-up", 43000, events.NodeUp{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", DownSeconds: 42,
	})
	res := &sdk.ExecuteRequest{Event: up, Down: down, Rule: "node-failure", With: with, Resolve: true, IdempotencyKey: "ev-up/incidents/0/undo"}
	if r, err := p.Undo(ctx, res); err != nil || r.Message != "incident inc-1 resolved" {
		t.Fatalf("undo = %+v, %v", r, err)
	}
	want = Summary{Incident: "inc-1", Status: "resolved", Text: "resolved after 42s: node-failure (node-failure, critical) on orders-eu-1"}
	if got := nextSummary(t, sub); got != want {
		t.Fatalf("summary = %+v, want %+v", got, want)
	}
	inc = record(t, js)
	if inc.Status != "resolved" || inc.EndedAt != 43000 || inc.DownSeconds != 42 || inc.Since != 1000 {
		t.Fatalf("record = %+v", inc)
	}

	// A rule's mistake is reported as permanent: no retry can fix it.
	_, err = p.Execute(ctx, &sdk.ExecuteRequest{Event: down, Down: down, With: map[string]any{"bucket": 3}})
	if ae, ok := err.(*pluginhost.ActionError); !ok || !ae.Permanent {
		t.Fatalf("bad bucket: %#v", err)
	}
}

func nextSummary(t *testing.T, sub *nats.Subscription) Summary {
	t.Helper()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(msg.Data, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func record(t *testing.T, js jetstream.JetStream) Incident {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "incidents_test")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	var inc Incident
	if err := json.Unmarshal(e.Value(), &inc); err != nil {
		t.Fatal(err)
	}
	return inc
}

// flakyHost fails the publishes it is told to, and passes on everything else.
type flakyHost struct {
	sdk.Host
	mu   sync.Mutex
	fail int
}

func (h *flakyHost) failNext() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail++
}

func (h *flakyHost) Publish(ctx context.Context, subject string, data []byte) error {
	h.mu.Lock()
	fail := h.fail > 0
	if fail {
		h.fail--
	}
	h.mu.Unlock()
	if fail {
		return errors.New("publish failed")
	}
	return h.Host.Publish(ctx, subject, data)
}

// A request whose summary could not be published publishes it on retry:
// the record says the request was applied only once the summary is out.
func TestRetryAfterFailedPublish(t *testing.T) {
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	sub, err := nc.SubscribeSync("ops.incidents")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host := &flakyHost{Host: hostapi.New(nc)}
	p, err := pluginhost.Start(ctx, pluginhost.Config{Path: binary, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()

	down := envelope(t, events.TypeNodeDown, "ev-down", 1000, events.NodeDown{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", Level: "critical",
		AffectedNodes: []string{"orders-eu-1"},
	})
	with := map[string]any{"bucket": "incidents_test", "subject": "ops.incidents"}
	fire := &sdk.ExecuteRequest{Event: down, Down: down, Rule: "node-failure", With: with, IdempotencyKey: "ev-down/incidents/0/execute"}
	host.failNext()
	if _, err := p.Execute(ctx, fire); err == nil {
		t.Fatal("execute succeeded though its publish failed")
	}
	if r, err := p.Execute(ctx, fire); err != nil || r.Message != "incident inc-1 opened" {
		t.Fatalf("retried execute = %+v, %v", r, err)
	}
	if got := nextSummary(t, sub); got.Status != "open" {
		t.Fatalf("summary = %+v", got)
	}

	up := envelope(t, events.TypeNodeUp, "ev-up", 43000, events.NodeUp{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", DownSeconds: 42,
	})
	res := &sdk.ExecuteRequest{Event: up, Down: down, Rule: "node-failure", With: with, Resolve: true, IdempotencyKey: "ev-up/incidents/0/undo"}
	host.failNext()
	if _, err := p.Undo(ctx, res); err == nil {
		t.Fatal("undo succeeded though its publish failed")
	}
	if r, err := p.Undo(ctx, res); err != nil || r.Message != "incident inc-1 resolved" {
		t.Fatalf("retried undo = %+v, %v", r, err)
	}
	want := Summary{Incident: "inc-1", Status: "resolved", Text: "resolved after 42s: node-failure (node-failure, critical) on orders-eu-1"}
	if got := nextSummary(t, sub); got != want {
		t.Fatalf("summary = %+v, want %+v", got, want)
	}
	if inc := record(t, js); inc.Status != "resolved" || inc.LastKey != res.IdempotencyKey {
		t.Fatalf("record = %+v", inc)
	}
	// Once published and recorded, a further retry does nothing.
	if r, err := p.Undo(ctx, res); err != nil || r.Message != "incident inc-1 already resolved" {
		t.Fatalf("third undo = %+v, %v", r, err)
	}
}
