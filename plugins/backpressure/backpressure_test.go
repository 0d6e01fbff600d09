package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

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
	ctx := ctxT(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
		Durable: "orders-eu-1", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000,
	}); err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, js: js, host: hostapi.New(nc)}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func envelope(t *testing.T, typ, id, corr string, payload any) events.Envelope {
	t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Payload: p, Context: events.Context{
		ID: id, Timestamp: 1732400000000, Sender: "happen-engine/test", CorrelationID: corr,
	}}
}

func nodeDown(t *testing.T, nodeID string, ackRate float64) events.Envelope {
	return envelope(t, events.TypeNodeDown, "ev-down-1", "inc-1", events.NodeDown{
		NodeID: nodeID, Pattern: "bottleneck", Rule: "bottleneck", Level: "warning",
		Stream: "ORDERS", Consumer: "orders-eu-1", AffectedNodes: []string{nodeID},
		LagMetrics: events.LagMetrics{AckRate: ackRate, MessagesWaiting: 300},
	})
}

func (e *env) fire(down events.Envelope, with map[string]any) *sdk.ExecuteRequest {
	return &sdk.ExecuteRequest{Event: down, Down: down, Rule: "bottleneck", With: with, IdempotencyKey: "k-fire", Host: e.host}
}

func (e *env) resolve(t *testing.T, down events.Envelope, with map[string]any) *sdk.ExecuteRequest {
	up := envelope(t, events.TypeNodeUp, "ev-up-1", down.Context.CorrelationID, events.NodeUp{
		NodeID: "orders-eu-1", Pattern: "bottleneck", Rule: "bottleneck", DownSeconds: 12,
	})
	return &sdk.ExecuteRequest{Event: up, Down: down, Rule: "bottleneck", With: with, Resolve: true, IdempotencyKey: "k-undo", Host: e.host}
}

func (e *env) subscribe(t *testing.T, subject string) *nats.Subscription {
	t.Helper()
	sub, err := e.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

func nextDirective(t *testing.T, sub *nats.Subscription) (string, Directive) {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no directive: %v", err)
	}
	var d Directive
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatalf("directive %s: %v", m.Data, err)
	}
	// Exactly the contract's fields, no more.
	var fields map[string]any
	if err := json.Unmarshal(m.Data, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"nodeId", "action", "rate", "reason", "eventId"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("directive %s lacks %q", m.Data, k)
		}
	}
	if len(fields) != 5 {
		t.Errorf("directive %s has extra fields", m.Data)
	}
	return m.Subject, d
}

func (e *env) maxAckPending(t *testing.T) int {
	t.Helper()
	c, err := e.js.Consumer(ctxT(t), "ORDERS", "orders-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Config.MaxAckPending
}

func (e *env) memo(t *testing.T) (memo, bool) {
	t.Helper()
	raw, found, err := e.host.KVGet(ctxT(t), Bucket, "ORDERS.orders-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	var m memo
	if found {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
	}
	return m, found
}

func TestThrottleDirective(t *testing.T) {
	e := setup(t)
	sub := e.subscribe(t, "happen.control.backpressure.>")
	b := New("test")
	down := nodeDown(t, "orders-eu-1", 12.5)

	resp, err := b.Execute(ctxT(t), e.fire(down, map[string]any{"factor": 0.5}))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	subj, d := nextDirective(t, sub)
	if subj != "happen.control.backpressure.orders-eu-1" {
		t.Errorf("subject %s", subj)
	}
	want := Directive{NodeID: "orders-eu-1", Action: "throttle", Rate: 6.25, EventID: "ev-down-1",
		Reason: "bottleneck on node orders-eu-1 (rule bottleneck): throttle to 50% of its ack rate of 12.5 msg/s"}
	if d != want {
		t.Errorf("directive\n got %+v\nwant %+v", d, want)
	}
	if !strings.Contains(resp.Message, "6.25") {
		t.Errorf("message %q", resp.Message)
	}
	// Without maxAckPending the consumer is left alone.
	if got := e.maxAckPending(t); got != 1000 {
		t.Errorf("max_ack_pending = %d", got)
	}
	if _, found := e.memo(t); found {
		t.Error("memo written without maxAckPending")
	}
}

func TestDefaultFactor(t *testing.T) {
	e := setup(t)
	sub := e.subscribe(t, "happen.control.backpressure.orders-eu-1")
	if _, err := New("test").Execute(ctxT(t), e.fire(nodeDown(t, "orders-eu-1", 10), nil)); err != nil {
		t.Fatal(err)
	}
	_, d := nextDirective(t, sub)
	if d.Rate != 8 {
		t.Errorf("rate %v, want 8", d.Rate)
	}
	if want := "bottleneck on node orders-eu-1 (rule bottleneck): throttle to 80% of its ack rate of 10 msg/s"; d.Reason != want {
		t.Errorf("reason %q, want %q", d.Reason, want)
	}
}

func TestLowerAndRestoreMaxAckPending(t *testing.T) {
	e := setup(t)
	sub := e.subscribe(t, "happen.control.backpressure.orders-eu-1")
	b := New("test")
	with := map[string]any{"maxAckPending": 10}
	down := nodeDown(t, "orders-eu-1", 4)

	if _, err := b.Execute(ctxT(t), e.fire(down, with)); err != nil {
		t.Fatalf("execute: %v", err)
	}
	nextDirective(t, sub)
	if got := e.maxAckPending(t); got != 10 {
		t.Fatalf("max_ack_pending = %d, want 10", got)
	}
	m, found := e.memo(t)
	if !found || m.Original != 1000 || m.Lowered != 10 || m.Stream != "ORDERS" || m.Consumer != "orders-eu-1" {
		t.Fatalf("memo %+v found %v", m, found)
	}

	// A retry of the same action must not take the lowered value for the
	// original.
	if _, err := b.Execute(ctxT(t), e.fire(down, with)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	nextDirective(t, sub)
	if m, _ := e.memo(t); m.Original != 1000 {
		t.Fatalf("retry overwrote the original: %+v", m)
	}
	// A new plugin process (after a crash) reads the same memo.
	if _, err := New("test").Execute(ctxT(t), e.fire(down, with)); err != nil {
		t.Fatalf("execute after restart: %v", err)
	}
	nextDirective(t, sub)
	if m, _ := e.memo(t); m.Original != 1000 {
		t.Fatalf("restart overwrote the original: %+v", m)
	}

	resp, err := b.Undo(ctxT(t), e.resolve(t, down, with))
	if err != nil {
		t.Fatalf("undo: %v", err)
	}
	subj, d := nextDirective(t, sub)
	want := Directive{NodeID: "orders-eu-1", Action: "release", Rate: 0, EventID: "ev-up-1",
		Reason: "bottleneck on node orders-eu-1 (rule bottleneck) has cleared: release the throttle"}
	if subj != "happen.control.backpressure.orders-eu-1" || d != want {
		t.Errorf("release on %s\n got %+v\nwant %+v", subj, d, want)
	}
	if got := e.maxAckPending(t); got != 1000 {
		t.Errorf("max_ack_pending = %d after undo, want 1000", got)
	}
	if _, found := e.memo(t); found {
		t.Error("memo kept after undo")
	}
	if !strings.Contains(resp.Message, "restored to 1000") {
		t.Errorf("message %q", resp.Message)
	}
	// A retried undo only republishes the release.
	if _, err := b.Undo(ctxT(t), e.resolve(t, down, with)); err != nil {
		t.Fatalf("retried undo: %v", err)
	}
	if _, d := nextDirective(t, sub); d.Action != "release" {
		t.Errorf("retried undo published %+v", d)
	}
	if got := e.maxAckPending(t); got != 1000 {
		t.Errorf("max_ack_pending = %d after retried undo", got)
	}
}

func TestRestoreLeavesOperatorChange(t *testing.T) {
	e := setup(t)
	b := New("test")
	with := map[string]any{"maxAckPending": 10}
	down := nodeDown(t, "orders-eu-1", 4)
	if _, err := b.Execute(ctxT(t), e.fire(down, with)); err != nil {
		t.Fatal(err)
	}
	// An operator sets their own value while the throttle is on.
	if err := e.host.UpdateConsumer(ctxT(t), "ORDERS", "orders-eu-1", map[string]any{"max_ack_pending": 50}); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Undo(ctxT(t), e.resolve(t, down, with))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.maxAckPending(t); got != 50 {
		t.Errorf("max_ack_pending = %d, want the operator's 50", got)
	}
	if _, found := e.memo(t); found {
		t.Error("memo kept")
	}
	if !strings.Contains(resp.Message, "left as is") {
		t.Errorf("message %q", resp.Message)
	}
}

func TestAlreadyBelowTarget(t *testing.T) {
	e := setup(t)
	b := New("test")
	if _, err := b.Execute(ctxT(t), e.fire(nodeDown(t, "orders-eu-1", 4), map[string]any{"maxAckPending": 5000})); err != nil {
		t.Fatal(err)
	}
	if got := e.maxAckPending(t); got != 1000 {
		t.Errorf("max_ack_pending raised to %d", got)
	}
	if _, found := e.memo(t); found {
		t.Error("memo written although nothing was lowered")
	}
}

func TestUndoAfterConsumerDeleted(t *testing.T) {
	e := setup(t)
	b := New("test")
	with := map[string]any{"maxAckPending": 10}
	down := nodeDown(t, "orders-eu-1", 4)
	if _, err := b.Execute(ctxT(t), e.fire(down, with)); err != nil {
		t.Fatal(err)
	}
	if err := e.js.DeleteConsumer(ctxT(t), "ORDERS", "orders-eu-1"); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Undo(ctxT(t), e.resolve(t, down, with))
	if err != nil {
		t.Fatalf("undo of a deleted consumer: %v", err)
	}
	if !strings.Contains(resp.Message, "no longer exists") {
		t.Errorf("message %q", resp.Message)
	}
	if _, found := e.memo(t); found {
		t.Error("memo kept")
	}
}

func TestExecuteMissingConsumer(t *testing.T) {
	e := setup(t)
	down := envelope(t, events.TypeNodeDown, "ev-x", "inc-x", events.NodeDown{
		NodeID: "ghost", Pattern: "node-failure", Rule: "node-failure", Stream: "ORDERS", Consumer: "ghost",
	})
	_, err := New("test").Execute(ctxT(t), e.fire(down, map[string]any{"maxAckPending": 10}))
	if err == nil || !strings.Contains(err.Error(), "ORDERS/ghost") || !strings.Contains(err.Error(), "consumer not found") {
		t.Fatalf("got %v", err)
	}
	if !sdk.IsPermanent(err) {
		t.Error("a missing consumer is not a permanent failure")
	}
}

func TestRejects(t *testing.T) {
	e := setup(t)
	b := New("test")
	sysDown := envelope(t, events.TypeSystemDown, "ev-s", "inc-s", events.SystemDown{Pattern: "overload", Rule: "system-overload"})
	cases := []struct {
		name string
		req  *sdk.ExecuteRequest
		want string
	}{
		{"system event", e.fire(sysDown, nil), `not "system.down"`},
		{"dot in node id", e.fire(nodeDown(t, "orders.eu.1", 1), nil), `node id "orders.eu.1" cannot be a subject token`},
		{"wildcard node id", e.fire(nodeDown(t, "orders>", 1), nil), `node id "orders>" cannot be a subject token`},
		{"space in node id", e.fire(nodeDown(t, "orders eu", 1), nil), `node id "orders eu" cannot be a subject token`},
		{"empty node id", e.fire(nodeDown(t, "", 1), nil), "node id is empty"},
		{"factor too big", e.fire(nodeDown(t, "n1", 1), map[string]any{"factor": 2}), "parameter factor: 2 is outside (0, 1]"},
		{"factor not a number", e.fire(nodeDown(t, "n1", 1), map[string]any{"factor": "fast"}), "parameter factor"},
		{"bad maxAckPending", e.fire(nodeDown(t, "n1", 1), map[string]any{"maxAckPending": 0}), "maxAckPending: 0 is below 1"},
		{"unknown param", e.fire(nodeDown(t, "n1", 1), map[string]any{"facter": 0.5}), "unknown parameter(s) facter"},
	}
	sub := e.subscribe(t, "happen.control.>")
	for _, c := range cases {
		_, err := b.Execute(ctxT(t), c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
		if !sdk.IsPermanent(err) {
			t.Errorf("%s: retrying cannot help, yet the error is not permanent", c.name)
		}
	}
	// Nothing was published for any rejected request.
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("published %s on %s", m.Data, m.Subject)
	}
	// Undo refuses system events too.
	sysUp := envelope(t, events.TypeSystemUp, "ev-su", "inc-s", events.SystemUp{Pattern: "overload"})
	if _, err := b.Undo(ctxT(t), &sdk.ExecuteRequest{Event: sysUp, Down: sysDown, Resolve: true, Host: e.host}); err == nil || !strings.Contains(err.Error(), `not "system.up"`) {
		t.Errorf("undo of system.up: %v", err)
	}
}

func TestUndoTakesNodeFromDown(t *testing.T) {
	e := setup(t)
	sub := e.subscribe(t, "happen.control.backpressure.>")
	down := nodeDown(t, "orders-eu-1", 4)
	up := envelope(t, events.TypeNodeUp, "ev-up-2", "inc-1", map[string]any{})
	if _, err := New("test").Undo(ctxT(t), &sdk.ExecuteRequest{Event: up, Down: down, Resolve: true, Host: e.host}); err != nil {
		t.Fatal(err)
	}
	if subj, d := nextDirective(t, sub); subj != "happen.control.backpressure.orders-eu-1" || d.NodeID != "orders-eu-1" || d.Action != "release" {
		t.Errorf("%s %+v", subj, d)
	}
}

func TestMemoKey(t *testing.T) {
	cases := map[[2]string]string{
		{"ORDERS", "orders-eu-1"}: "ORDERS.orders-eu-1",
		{"ORDERS", "a=b"}:         "ORDERS.a=3Db",
		{"ORDERS", "a/b"}:         "ORDERS.a=2Fb",
		{"S", "ü"}:                "S.=C3=BC",
	}
	for in, want := range cases {
		if got := memoKey(in[0], in[1]); got != want {
			t.Errorf("memoKey(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	d, err := New("1.2.3").Describe(context.Background(), &sdk.DescribeRequest{})
	if err != nil || d.Name != "backpressure" || d.Version != "1.2.3" || len(d.Params) != 2 {
		t.Fatalf("%+v %v", d, err)
	}
}
