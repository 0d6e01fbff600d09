package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const t0 = int64(1732400000000)

type env struct {
	srv  *server.Server
	nc   *nats.Conn
	host sdk.Host
	sub  *nats.Subscription
}

func setup(t *testing.T) *env {
	t.Helper()
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	sub, err := nc.SubscribeSync(Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &env{srv: s, nc: nc, host: hostapi.New(nc), sub: sub}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func down(t *testing.T, id, corr, node string, ts int64, affected ...string) events.Envelope {
	t.Helper()
	p, err := json.Marshal(events.NodeDown{
		NodeID: node, Pattern: "partition", Rule: "partition", Level: "critical", Group: "eu",
		Stream: "ORDERS", Consumer: node, AffectedNodes: affected,
	})
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: events.TypeNodeDown, Payload: p, Context: events.Context{
		ID: id, Timestamp: ts, Sender: "happen-engine/test", CorrelationID: corr,
	}}
}

func up(t *testing.T, d events.Envelope, node string, ts int64) events.Envelope {
	t.Helper()
	p, err := json.Marshal(events.NodeUp{NodeID: node, Pattern: "partition", Rule: "partition", DownSeconds: 5})
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: events.TypeNodeUp, Payload: p, Context: events.Context{
		ID: "up-" + d.Context.ID, Timestamp: ts, Sender: "happen-engine/test",
		CausationID: d.Context.ID, CorrelationID: d.Context.CorrelationID,
	}}
}

func (e *env) fire(d events.Envelope, with map[string]any) *sdk.ExecuteRequest {
	return &sdk.ExecuteRequest{Event: d, Down: d, Rule: "partition", With: with, IdempotencyKey: d.Context.ID, Host: e.host}
}

func (e *env) resolve(t *testing.T, d events.Envelope, node string, with map[string]any) *sdk.ExecuteRequest {
	u := up(t, d, node, t0+60_000)
	return &sdk.ExecuteRequest{Event: u, Down: d, Rule: "partition", With: with, Resolve: true, IdempotencyKey: u.Context.ID, Host: e.host}
}

// next returns the next directive as raw JSON.
func (e *env) next(t *testing.T) string {
	t.Helper()
	m, err := e.sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no directive on %s: %v", Subject, err)
	}
	return string(m.Data)
}

// stored reads the mode the way an application does on (re)connect: its
// own connection, an ordinary KV get.
func (e *env) stored(t *testing.T) string {
	t.Helper()
	nc := testutil.Connect(t, e.srv.ClientURL())
	js := testutil.JetStream(t, nc)
	ctx := ctxT(t)
	kv, err := js.KeyValue(ctx, ModesBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", ModesBucket, err)
	}
	entry, err := kv.Get(ctx, ModeKey)
	if err != nil {
		t.Fatalf("key %s: %v", ModeKey, err)
	}
	return string(entry.Value())
}

func modeJSON(active bool, nodes []string, pr, q bool, since int64) string {
	n, _ := json.Marshal(nodes)
	return fmt.Sprintf(`{"active":%v,"isolatedNodes":%s,"prioritizeLocalOperations":%v,"queueRemoteOperations":%v,"since":%d}`, active, n, pr, q, since)
}

func TestFireStoresAndPublishes(t *testing.T) {
	e := setup(t)
	p := New("test")
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d1", "inc-eu", "eu-2", t0, "eu-2", "eu-1"), nil)); err != nil {
		t.Fatalf("execute: %v", err)
	}
	want := modeJSON(true, []string{"eu-1", "eu-2"}, true, true, t0)
	if got := e.next(t); got != want {
		t.Errorf("directive\n got %s\nwant %s", got, want)
	}
	if got := e.stored(t); got != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
}

func TestParams(t *testing.T) {
	e := setup(t)
	with := map[string]any{"prioritizeLocalOperations": false, "queueRemoteOperations": "false"}
	if _, err := New("test").Execute(ctxT(t), e.fire(down(t, "d1", "inc", "n1", t0, "n1"), with)); err != nil {
		t.Fatal(err)
	}
	if got, want := e.next(t), modeJSON(true, []string{"n1"}, false, false, t0); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestMergeOneIncident(t *testing.T) {
	e := setup(t)
	p := New("test")
	// The later event comes first; the mode keeps the earliest start.
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d2", "inc-eu", "eu-2", t0+500, "eu-2"), nil)); err != nil {
		t.Fatal(err)
	}
	e.next(t)
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d1", "inc-eu", "eu-1", t0, "eu-1", "eu-3"), nil)); err != nil {
		t.Fatal(err)
	}
	want := modeJSON(true, []string{"eu-1", "eu-2", "eu-3"}, true, true, t0)
	if got := e.next(t); got != want {
		t.Errorf("directive\n got %s\nwant %s", got, want)
	}
	// A retry changes nothing, even from a restarted plugin.
	if _, err := New("test").Execute(ctxT(t), e.fire(down(t, "d2", "inc-eu", "eu-2", t0+500, "eu-2"), nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.next(t); got != want {
		t.Errorf("after retry\n got %s\nwant %s", got, want)
	}
	if got := e.stored(t); got != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
}

func TestConcurrentNodeDownsOfOneIncident(t *testing.T) {
	e := setup(t)
	p := New("test")
	nodes := []string{"eu-1", "eu-2", "eu-3", "eu-4", "eu-5"}
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() {
			_, err := p.Execute(ctxT(t), e.fire(down(t, "d-"+n, "inc-eu", n, t0+int64(i), n), nil))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.stored(t), modeJSON(true, nodes, true, true, t0); got != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
}

func TestResolveClears(t *testing.T) {
	e := setup(t)
	p := New("test")
	d1 := down(t, "d1", "inc-eu", "eu-1", t0, "eu-1", "eu-2")
	d2 := down(t, "d2", "inc-eu", "eu-2", t0+200, "eu-1", "eu-2")
	for _, d := range []events.Envelope{d1, d2} {
		if _, err := p.Execute(ctxT(t), e.fire(d, nil)); err != nil {
			t.Fatal(err)
		}
		e.next(t)
	}
	// eu-2 heals first: eu-1 is still cut off.
	if _, err := p.Undo(ctxT(t), e.resolve(t, d2, "eu-2", nil)); err != nil {
		t.Fatalf("undo eu-2: %v", err)
	}
	if got, want := e.next(t), modeJSON(true, []string{"eu-1"}, true, true, t0); got != want {
		t.Errorf("after eu-2 up\n got %s\nwant %s", got, want)
	}
	resp, err := p.Undo(ctxT(t), e.resolve(t, d1, "eu-1", nil))
	if err != nil {
		t.Fatalf("undo eu-1: %v", err)
	}
	want := modeJSON(false, []string{}, true, true, t0)
	if got := e.next(t); got != want {
		t.Errorf("directive\n got %s\nwant %s", got, want)
	}
	// The key is kept, saying inactive.
	if got := e.stored(t); got != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(resp.Message, "inactive") {
		t.Errorf("message %q", resp.Message)
	}
	// Retries of both resolves, from this plugin and a restarted one,
	// change and publish nothing.
	for _, pm := range []*PartitionMode{p, New("test")} {
		for _, r := range []*sdk.ExecuteRequest{e.resolve(t, d1, "eu-1", nil), e.resolve(t, d2, "eu-2", nil)} {
			if _, err := pm.Undo(ctxT(t), r); err != nil {
				t.Fatalf("repeated undo: %v", err)
			}
		}
	}
	// A node.down of the ended incident arriving late does not reopen it.
	if _, err := p.Execute(ctxT(t), e.fire(d2, nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(t); got != want {
		t.Errorf("late node.down reopened the incident: %s", got)
	}
	if st := e.state(t); len(st.Incidents) != 0 || len(st.Resolved) != 1 || st.Resolved[0].ID != "inc-eu" {
		t.Errorf("state %+v", st)
	}
	// The next directive is a new incident's: nothing was published since
	// the end.
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d-us", "inc-us", "us-1", t0+5000, "us-1"), nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := e.next(t), modeJSON(true, []string{"us-1"}, true, true, t0+5000); got != want {
		t.Errorf("after retries and a late node.down\n got %s\nwant %s", got, want)
	}
}

// A group incident ends node by node: one node leaves (its consumer is
// deleted) or is superseded, the others stay cut off until they heal.
func TestPartialResolve(t *testing.T) {
	e := setup(t)
	p := New("test")
	nodes := []string{"eu-1", "eu-2", "eu-3"}
	downs := map[string]events.Envelope{}
	for i, n := range nodes {
		downs[n] = down(t, "d-"+n, "inc-eu", n, t0+int64(i), nodes...)
	}
	// eu-3's node.down is slow to arrive: eu-1 and eu-2 open the incident.
	for _, n := range nodes[:2] {
		if _, err := p.Execute(ctxT(t), e.fire(downs[n], nil)); err != nil {
			t.Fatal(err)
		}
		e.next(t)
	}
	undo := func(pm *PartitionMode, n, reason string) *sdk.ExecuteResponse {
		t.Helper()
		r := e.resolve(t, downs[n], n, nil)
		r.Event = upWith(t, r.Event, reason)
		resp, err := pm.Undo(ctxT(t), r)
		if err != nil {
			t.Fatalf("undo %s: %v", n, err)
		}
		return resp
	}

	resp := undo(p, "eu-1", events.ReasonLeft)
	active := modeJSON(true, []string{"eu-2", "eu-3"}, true, true, t0)
	if got := e.next(t); got != active {
		t.Fatalf("after eu-1 left\n got %s\nwant %s", got, active)
	}
	if got := e.stored(t); got != active {
		t.Errorf("stored after eu-1 left\n got %s\nwant %s", got, active)
	}
	if !strings.Contains(resp.Message, "still active") {
		t.Errorf("message %q", resp.Message)
	}
	// The retry, from a restarted plugin too, publishes nothing.
	undo(p, "eu-1", events.ReasonLeft)
	undo(New("test"), "eu-1", events.ReasonLeft)
	// eu-3's node.down arrives late, listing eu-1: eu-1 stays healed.
	if _, err := p.Execute(ctxT(t), e.fire(downs["eu-3"], nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.next(t); got != active {
		t.Errorf("after the late node.down (or a retry published again)\n got %s\nwant %s", got, active)
	}

	undo(p, "eu-2", events.ReasonSuperseded)
	if got, want := e.next(t), modeJSON(true, []string{"eu-3"}, true, true, t0); got != want {
		t.Errorf("after eu-2 superseded\n got %s\nwant %s", got, want)
	}
	if st := e.state(t); len(st.Incidents) != 1 || len(st.Resolved) != 0 {
		t.Errorf("incident ended early: %+v", st)
	}

	resp = undo(New("test"), "eu-3", events.ReasonCleared)
	inactive := modeJSON(false, []string{}, true, true, t0)
	if got := e.next(t); got != inactive {
		t.Errorf("after the last node\n got %s\nwant %s", got, inactive)
	}
	if got := e.stored(t); got != inactive {
		t.Errorf("stored at the end\n got %s\nwant %s", got, inactive)
	}
	if !strings.Contains(resp.Message, "inactive") {
		t.Errorf("message %q", resp.Message)
	}
	if st := e.state(t); len(st.Incidents) != 0 || len(st.Resolved) != 1 {
		t.Errorf("state at the end %+v", st)
	}
}

// A resolve that could not publish is published by its retry: the state is
// saved only once the directive is out.
func TestUndoRetriedAfterPublishFailure(t *testing.T) {
	e := setup(t)
	p := New("test")
	nodes := []string{"eu-1", "eu-2"}
	d1 := down(t, "d1", "inc-eu", "eu-1", t0, nodes...)
	if _, err := p.Execute(ctxT(t), e.fire(d1, nil)); err != nil {
		t.Fatal(err)
	}
	e.next(t)
	req := e.resolve(t, d1, "eu-1", nil)
	flaky := &failingHost{Host: e.host, fail: 1}
	failed := *req
	failed.Host = flaky
	if _, err := p.Undo(ctxT(t), &failed); err == nil {
		t.Fatal("undo succeeded without publishing")
	}
	if _, err := p.Undo(ctxT(t), req); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got, want := e.next(t), modeJSON(true, []string{"eu-2"}, true, true, t0); got != want {
		t.Errorf("after the retry\n got %s\nwant %s", got, want)
	}
}

// failingHost fails its first fail publishes.
type failingHost struct {
	sdk.Host
	mu   sync.Mutex
	fail int
}

func (h *failingHost) Publish(ctx context.Context, subject string, data []byte) error {
	h.mu.Lock()
	fail := h.fail > 0
	h.fail--
	h.mu.Unlock()
	if fail {
		return errors.New("publish failed")
	}
	return h.Host.Publish(ctx, subject, data)
}

// upWith sets the reason of a node.up.
func upWith(t *testing.T, u events.Envelope, reason string) events.Envelope {
	t.Helper()
	var p events.NodeUp
	if err := u.Decode(&p); err != nil {
		t.Fatal(err)
	}
	p.Reason = reason
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	u.Payload = raw
	return u
}

// state reads the plugin's incidents from KV.
func (e *env) state(t *testing.T) *state {
	t.Helper()
	st, err := loadState(ctxT(t), e.host)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTwoIncidents(t *testing.T) {
	e := setup(t)
	p := New("test")
	eu := down(t, "d-eu", "inc-eu", "eu-1", t0+1000, "eu-1")
	us := down(t, "d-us", "inc-us", "us-1", t0, "us-1")
	for _, d := range []events.Envelope{eu, us} {
		if _, err := p.Execute(ctxT(t), e.fire(d, nil)); err != nil {
			t.Fatal(err)
		}
		e.next(t)
	}
	if got, want := e.stored(t), modeJSON(true, []string{"eu-1", "us-1"}, true, true, t0); got != want {
		t.Errorf("both open\n got %s\nwant %s", got, want)
	}
	if _, err := p.Undo(ctxT(t), e.resolve(t, us, "us-1", nil)); err != nil {
		t.Fatal(err)
	}
	// us healed, eu still cut off.
	if got, want := e.next(t), modeJSON(true, []string{"eu-1"}, true, true, t0+1000); got != want {
		t.Errorf("one open\n got %s\nwant %s", got, want)
	}
	if _, err := p.Undo(ctxT(t), e.resolve(t, eu, "eu-1", nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := e.next(t), modeJSON(false, []string{}, true, true, t0+1000); got != want {
		t.Errorf("none open\n got %s\nwant %s", got, want)
	}
}

func TestRejects(t *testing.T) {
	e := setup(t)
	p := New("test")
	sys := events.Envelope{Type: events.TypeSystemDown, Payload: json.RawMessage(`{}`), Context: events.Context{ID: "s1"}}
	if _, err := p.Execute(ctxT(t), e.fire(sys, nil)); err == nil || !strings.Contains(err.Error(), `not "system.down"`) {
		t.Errorf("system.down: %v", err)
	}
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d", "c", "", t0), nil)); err == nil || !strings.Contains(err.Error(), "names no node") {
		t.Errorf("no node: %v", err)
	}
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d", "c", "n", t0), map[string]any{"queueRemote": true})); err == nil || !strings.Contains(err.Error(), "unknown parameter(s) queueRemote") || !sdk.IsPermanent(err) {
		t.Errorf("unknown param: %v (permanent: %v)", err, sdk.IsPermanent(err))
	}
	if _, err := p.Execute(ctxT(t), e.fire(down(t, "d", "c", "n", t0), map[string]any{"queueRemoteOperations": "sometimes"})); err == nil || !strings.Contains(err.Error(), "queueRemoteOperations") {
		t.Errorf("bad bool: %v", err)
	}
	if _, err := p.Execute(ctxT(t), &sdk.ExecuteRequest{Event: down(t, "d", "c", "n", t0)}); err == nil || !strings.Contains(err.Error(), "no host") {
		t.Errorf("no host: %v", err)
	}
	if m, err := e.sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("published %s", m.Data)
	}
}

func TestDescribe(t *testing.T) {
	d, err := New("1.0.0").Describe(context.Background(), &sdk.DescribeRequest{})
	if err != nil || d.Name != "partition-mode" || len(d.Params) != 2 {
		t.Fatalf("%+v %v", d, err)
	}
}
