package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const (
	tDown = int64(1732400000000) // 2024-11-23T22:13:20Z
	tUp   = int64(1732400042500)
)

// hook is a webhook that records what it receives and answers with reply.
type hook struct {
	*httptest.Server
	mu    sync.Mutex
	got   []received
	reply func(n int, w http.ResponseWriter, r *http.Request) // n counts from 1
}

type received struct {
	path   string
	header http.Header
	body   string
}

func newHook(t *testing.T, reply func(n int, w http.ResponseWriter, r *http.Request)) *hook {
	h := &hook{reply: reply}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, received{r.URL.Path, r.Header.Clone(), string(b)})
		n := len(h.got)
		h.mu.Unlock()
		if h.reply != nil {
			h.reply(n, w, r)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) requests() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.got...)
}

func status(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		c := http.StatusOK
		if n <= len(codes) {
			c = codes[n-1]
		}
		w.WriteHeader(c)
		fmt.Fprintf(w, "answer %d", n)
	}
}

// fast is an Alerting with short waits, for tests.
func fast() *Alerting {
	a := New("test")
	a.attemptTimeout = 5 * time.Second
	a.backoff = 10 * time.Millisecond
	a.maxBackoff = 50 * time.Millisecond
	a.maxAttempts = 4
	return a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func host(t *testing.T) sdk.Host {
	s := testutil.RunServer(t)
	return hostapi.New(testutil.Connect(t, s.ClientURL()))
}

func env(t *testing.T, typ, id, corr string, ts int64, payload any) events.Envelope {
	t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Payload: p, Context: events.Context{
		ID: id, Timestamp: ts, Sender: "happen-engine/a1", CorrelationID: corr,
	}}
}

func nodeFailure(t *testing.T) events.Envelope {
	return env(t, events.TypeNodeDown, "ev-1", "inc-1", tDown, events.NodeDown{
		NodeID: "orders-eu-1", Pattern: "node-failure", Rule: "node-failure", Level: "critical",
		Stream: "ORDERS", Consumer: "orders-eu-1", Group: "eu", AffectedNodes: []string{"orders-eu-1"},
		LagMetrics: events.LagMetrics{MessagesWaiting: 1520, NumPending: 1400, AckPending: 120, Redelivered: 3,
			LagGrowthRate: 48.5, SecondsSinceLastAck: 7.2},
	})
}

func nodeUp(t *testing.T, down events.Envelope, node string) events.Envelope {
	var d events.NodeDown
	if err := down.Decode(&d); err != nil {
		t.Fatal(err)
	}
	u := env(t, events.TypeNodeUp, "up-"+down.Context.ID, down.Context.CorrelationID, tUp, events.NodeUp{
		NodeID: node, Pattern: d.Pattern, Rule: d.Rule, DownSeconds: 42.5,
	})
	u.Context.CausationID = down.Context.ID
	return u
}

func partitionDown(t *testing.T, id, node string) events.Envelope {
	return env(t, events.TypeNodeDown, id, "inc-p", tDown, events.NodeDown{
		NodeID: node, Pattern: "partition", Rule: "partition", Level: "critical", Group: "eu",
		Stream: "ORDERS", Consumer: node, AffectedNodes: []string{"eu-2", "eu-1", "eu-3"},
		LagMetrics: events.LagMetrics{MessagesWaiting: 10, NumPending: 10},
	})
}

func systemDown(t *testing.T) events.Envelope {
	return env(t, events.TypeSystemDown, "ev-s", "inc-s", tDown, events.SystemDown{
		Level: "warning", Pattern: "overload", Rule: "system-overload", AffectedNodes: []string{"orders-us-1", "orders-eu-1"},
		Metrics: events.SystemMetrics{Nodes: 12, LaggingNodes: 10, LaggingFraction: 0.83, MessagesWaiting: 48210,
			PublishRate: 5400, PublishRateBaseline: 1800},
	})
}

func systemUp(t *testing.T) events.Envelope {
	return env(t, events.TypeSystemUp, "up-s", "inc-s", tUp, events.SystemUp{Pattern: "overload", Rule: "system-overload", DownSeconds: 42.5})
}

func fire(h sdk.Host, ev events.Envelope, with map[string]any) *sdk.ExecuteRequest {
	var d struct {
		Rule string `json:"rule"`
	}
	_ = json.Unmarshal(ev.Payload, &d)
	return &sdk.ExecuteRequest{Event: ev, Down: ev, Rule: d.Rule, With: with, IdempotencyKey: "fire-" + ev.Context.ID, Host: h}
}

func resolve(h sdk.Host, up, down events.Envelope, with map[string]any) *sdk.ExecuteRequest {
	r := fire(h, down, with)
	r.Event, r.Resolve, r.IdempotencyKey = up, true, "resolve-"+up.Context.ID
	return r
}

func with(url, format string) map[string]any {
	return map[string]any{"url": url, "format": format}
}

// compact re-encodes JSON so a golden literal can be written readably.
func compact(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("golden %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestJSONFormat(t *testing.T) {
	hk := newHook(t, nil)
	h := host(t)
	a := fast()
	down := nodeFailure(t)
	w := map[string]any{"url": hk.URL + "/hooks/secret", "headers": map[string]any{"Authorization": "Bearer t0k", "X-Try": 1}}

	resp, err := a.Execute(ctxT(t), fire(h, down, w))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if strings.Contains(resp.Message, "secret") {
		t.Errorf("message shows the URL path: %q", resp.Message)
	}
	up := nodeUp(t, down, "orders-eu-1")
	if _, err := a.Undo(ctxT(t), resolve(h, up, down, w)); err != nil {
		t.Fatalf("undo: %v", err)
	}
	got := hk.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	wantFire := `{"type":"node.down","payload":{"nodeId":"orders-eu-1","pattern":"node-failure","rule":"node-failure","level":"critical","stream":"ORDERS","consumer":"orders-eu-1","group":"eu","affectedNodes":["orders-eu-1"],"lagMetrics":{"messagesWaiting":1520,"numPending":1400,"ackPending":120,"redelivered":3,"deliveryRate":0,"ackRate":0,"lagGrowthRate":48.5,"waitingPulls":0,"secondsSinceLastAck":7.2,"timeLagSeconds":0,"timeLagEstimated":false,"secondsToDrain":0,"messagesLost":0,"secondsToLoss":0}},"context":{"id":"ev-1","timestamp":1732400000000,"sender":"happen-engine/a1","correlationId":"inc-1"}}`
	if got[0].body != wantFire {
		t.Errorf("fire body\n got %s\nwant %s", got[0].body, wantFire)
	}
	wantUp := `{"type":"node.up","payload":{"nodeId":"orders-eu-1","pattern":"node-failure","rule":"node-failure","downSeconds":42.5},"context":{"id":"up-ev-1","timestamp":1732400042500,"sender":"happen-engine/a1","causationId":"ev-1","correlationId":"inc-1"}}`
	if got[1].body != wantUp {
		t.Errorf("resolve body\n got %s\nwant %s", got[1].body, wantUp)
	}
	for _, r := range got {
		if r.path != "/hooks/secret" || r.header.Get("Content-Type") != "application/json" ||
			r.header.Get("Authorization") != "Bearer t0k" || r.header.Get("X-Try") != "1" ||
			r.header.Get("User-Agent") != "happen-alerting/test" {
			t.Errorf("request %s headers %v", r.path, r.header)
		}
	}
}

func TestSlackFormat(t *testing.T) {
	h := host(t)
	pd := partitionDown(t, "p1", "eu-1")
	cases := []struct {
		name string
		req  func(url string) *sdk.ExecuteRequest
		text string
	}{
		{"node fire", func(u string) *sdk.ExecuteRequest { return fire(h, nodeFailure(t), with(u, "slack")) },
			"[CRITICAL] node-failure on orders-eu-1 (group eu) [rule node-failure]: orders-eu-1: 1520 messages waiting (1400 pending, 120 unacked), ack rate 0/s, lag growing 48.5/s, last ack 7.2s ago"},
		{"node resolve", func(u string) *sdk.ExecuteRequest {
			d := nodeFailure(t)
			return resolve(h, nodeUp(t, d, "orders-eu-1"), d, with(u, "slack"))
		}, "[RESOLVED] node-failure on orders-eu-1 (group eu) resolved after 43s [rule node-failure]"},
		{"partition fire", func(u string) *sdk.ExecuteRequest { return fire(h, pd, with(u, "slack")) },
			"[CRITICAL] partition on group eu: 3 nodes (eu-1, eu-2, eu-3) [rule partition]: eu-1: 10 messages waiting (10 pending, 0 unacked), ack rate 0/s, lag growing 0/s, last ack 0s ago"},
		{"partition resolve", func(u string) *sdk.ExecuteRequest { return resolve(h, nodeUp(t, pd, "eu-1"), pd, with(u, "slack")) },
			"[RESOLVED] partition on group eu: 3 nodes (eu-1, eu-2, eu-3) resolved after 43s [rule partition]"},
		{"system fire", func(u string) *sdk.ExecuteRequest { return fire(h, systemDown(t), with(u, "slack")) },
			"[WARNING] overload on the system [rule system-overload]: 10 of 12 nodes lagging, 48210 messages waiting, publishing 5400/s (usual 1800/s); affected: orders-eu-1, orders-us-1"},
		{"system resolve", func(u string) *sdk.ExecuteRequest { return resolve(h, systemUp(t), systemDown(t), with(u, "slack")) },
			"[RESOLVED] overload on the system resolved after 43s [rule system-overload]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hk := newHook(t, nil)
			a := fast()
			req := c.req(hk.URL)
			var err error
			if req.Resolve {
				_, err = a.Undo(ctxT(t), req)
			} else {
				_, err = a.Execute(ctxT(t), req)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := hk.requests()
			if len(got) != 1 {
				t.Fatalf("%d requests", len(got))
			}
			want, _ := json.Marshal(map[string]string{"text": c.text})
			if got[0].body != string(want) {
				t.Errorf("body\n got %s\nwant %s", got[0].body, want)
			}
		})
	}
}

func TestAlertmanagerFormat(t *testing.T) {
	h := host(t)
	hk := newHook(t, nil)
	a := fast()
	down := nodeFailure(t)
	w := with(hk.URL+"/api/v2/alerts", "alertmanager")
	if _, err := a.Execute(ctxT(t), fire(h, down, w)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Undo(ctxT(t), resolve(h, nodeUp(t, down, "orders-eu-1"), down, w)); err != nil {
		t.Fatal(err)
	}
	got := hk.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	wantFire := compact(t, `[{
		"labels": {"alertname": "node-failure", "pattern": "node-failure", "nodeId": "orders-eu-1", "level": "critical"},
		"annotations": {
			"summary": "node-failure on orders-eu-1 (group eu) [rule node-failure]",
			"description": "orders-eu-1: 1520 messages waiting (1400 pending, 120 unacked), ack rate 0/s, lag growing 48.5/s, last ack 7.2s ago"
		},
		"startsAt": "2024-11-23T22:13:20Z"
	}]`)
	if c := compact(t, got[0].body); c != wantFire {
		t.Errorf("fire\n got %s\nwant %s", c, wantFire)
	}
	wantResolve := compact(t, `[{
		"labels": {"alertname": "node-failure", "pattern": "node-failure", "nodeId": "orders-eu-1", "level": "critical"},
		"annotations": {
			"summary": "node-failure on orders-eu-1 (group eu) resolved after 43s [rule node-failure]",
			"description": "orders-eu-1: 1520 messages waiting (1400 pending, 120 unacked), ack rate 0/s, lag growing 48.5/s, last ack 7.2s ago"
		},
		"startsAt": "2024-11-23T22:13:20Z",
		"endsAt": "2024-11-23T22:14:02.5Z"
	}]`)
	if c := compact(t, got[1].body); c != wantResolve {
		t.Errorf("resolve\n got %s\nwant %s", c, wantResolve)
	}
}

func TestAlertmanagerSystemAndPartition(t *testing.T) {
	h := host(t)
	hk := newHook(t, nil)
	a := fast()
	w := with(hk.URL, "alertmanager")
	if _, err := a.Execute(ctxT(t), fire(h, systemDown(t), w)); err != nil {
		t.Fatal(err)
	}
	// Every node of the partition gets its alert from the first node.down;
	// the other node.down events of the incident add nothing.
	for _, n := range []string{"eu-1", "eu-2", "eu-3"} {
		if _, err := a.Execute(ctxT(t), fire(h, partitionDown(t, "p-"+n, n), w)); err != nil {
			t.Fatal(err)
		}
	}
	got := hk.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	var sys, part []amAlert
	if err := json.Unmarshal([]byte(got[0].body), &sys); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(got[1].body), &part); err != nil {
		t.Fatal(err)
	}
	if len(sys) != 1 || sys[0].Labels["nodeId"] != "" || len(sys[0].Labels) != 3 ||
		sys[0].Labels["alertname"] != "system-overload" || sys[0].Labels["level"] != "warning" || sys[0].EndsAt != "" {
		t.Errorf("system alert %+v", sys)
	}
	var nodes []string
	for _, al := range part {
		nodes = append(nodes, al.Labels["nodeId"])
		if al.Labels["pattern"] != "partition" || al.StartsAt != "2024-11-23T22:13:20Z" {
			t.Errorf("partition alert %+v", al)
		}
	}
	if strings.Join(nodes, ",") != "eu-1,eu-2,eu-3" {
		t.Errorf("partition alerts for %v", nodes)
	}
}

func TestRetriesServerErrors(t *testing.T) {
	hk := newHook(t, status(500, 503, 429))
	a := fast()
	resp, err := a.Execute(ctxT(t), fire(host(t), nodeFailure(t), with(hk.URL, "json")))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if n := len(hk.requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
	if !strings.Contains(resp.Message, "4 attempt(s)") {
		t.Errorf("message %q", resp.Message)
	}
	for _, r := range hk.requests() {
		if r.body != hk.requests()[0].body {
			t.Error("retries sent different bodies")
		}
	}
}

func TestGivesUp(t *testing.T) {
	hk := newHook(t, status(500, 500, 500, 500, 500, 500))
	a := fast()
	a.maxAttempts = 3
	_, err := a.Execute(ctxT(t), fire(host(t), nodeFailure(t), with(hk.URL, "json")))
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("got %v", err)
	}
	if sdk.IsPermanent(err) {
		t.Error("server errors are reported as permanent; the engine would not retry")
	}
	if n := len(hk.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestClientErrorFailsAtOnce(t *testing.T) {
	hk := newHook(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "invalid_payload: "+strings.Repeat("x", 500))
	})
	_, err := fast().Execute(ctxT(t), fire(host(t), nodeFailure(t), with(hk.URL+"/T000/B000/secret", "slack")))
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request") || !strings.Contains(err.Error(), "invalid_payload") {
		t.Fatalf("got %v", err)
	}
	if !sdk.IsPermanent(err) {
		t.Error("a 400 is not reported as permanent")
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), strings.Repeat("x", 300)) {
		t.Errorf("error leaks the URL or the whole body: %v", err)
	}
	if n := len(hk.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestRedirectFailsAtOnce(t *testing.T) {
	hk := newHook(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	_, err := fast().Execute(ctxT(t), fire(host(t), nodeFailure(t), with(hk.URL, "json")))
	if err == nil || !strings.Contains(err.Error(), "302") {
		t.Fatalf("got %v", err)
	}
	if n := len(hk.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestTimeoutRetried(t *testing.T) {
	hk := newHook(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	a := fast()
	a.attemptTimeout = time.Second
	resp, err := a.Execute(ctxT(t), fire(host(t), nodeFailure(t), with(hk.URL, "json")))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if n := len(hk.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	if !strings.Contains(resp.Message, "2 attempt(s)") {
		t.Errorf("message %q", resp.Message)
	}
}

func TestConnectionErrorRetriedAndRedacted(t *testing.T) {
	hk := newHook(t, nil)
	dead := hk.URL + "/hooks/s3cr3t?token=abc"
	hk.Close()
	a := fast()
	a.maxAttempts = 2
	_, err := a.Execute(ctxT(t), fire(host(t), nodeFailure(t), with(dead, "json")))
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "abc") {
		t.Errorf("error leaks the URL: %v", err)
	}
}

func TestContextBoundsRetries(t *testing.T) {
	hk := newHook(t, status(500, 500, 500, 500, 500))
	a := fast()
	a.backoff, a.maxBackoff, a.maxAttempts = time.Hour, time.Hour, 10
	req := fire(host(t), nodeFailure(t), with(hk.URL, "json"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := a.Execute(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "stopped after 1 attempt(s)") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("got %v", err)
	}
}

func TestDedup(t *testing.T) {
	h := host(t)
	hk := newHook(t, nil)
	a := fast()
	w := with(hk.URL, "slack")
	down := nodeFailure(t)

	// A retried action is not sent twice.
	for range 2 {
		resp, err := a.Execute(ctxT(t), fire(h, down, w))
		if err != nil {
			t.Fatal(err)
		}
		t.Log(resp.Message)
	}
	if n := len(hk.requests()); n != 1 {
		t.Fatalf("%d requests after a repeat, want 1", n)
	}
	// The resolve is a different phase and goes out, once.
	up := nodeUp(t, down, "orders-eu-1")
	for range 2 {
		if _, err := a.Undo(ctxT(t), resolve(h, up, down, w)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(hk.requests()); n != 2 {
		t.Fatalf("%d requests after resolve, want 2", n)
	}
	// Another destination for the same incident gets its own alert.
	other := newHook(t, nil)
	if _, err := a.Execute(ctxT(t), fire(h, down, with(other.URL, "slack"))); err != nil {
		t.Fatal(err)
	}
	if n := len(other.requests()); n != 1 {
		t.Fatalf("other destination got %d requests", n)
	}
}

func TestDedupPartitionSiblings(t *testing.T) {
	h := host(t)
	hk := newHook(t, nil)
	a := fast()
	w := with(hk.URL, "json")
	nodes := []string{"eu-1", "eu-2", "eu-3"}
	// The node.down events of one partition arrive together.
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			if _, err := a.Execute(ctxT(t), fire(h, partitionDown(t, "p-"+n, n), w)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(hk.requests()); n != 1 {
		t.Fatalf("%d requests for one partition, want 1", n)
	}
	for _, n := range nodes {
		d := partitionDown(t, "p-"+n, n)
		if _, err := a.Undo(ctxT(t), resolve(h, nodeUp(t, d, n), d, w)); err != nil {
			t.Fatal(err)
		}
	}
	got := hk.requests()
	if len(got) != 2 || !strings.Contains(got[1].body, `"type":"node.up"`) {
		t.Fatalf("requests after resolve: %+v", got)
	}
}

func TestFailedSendIsNotRemembered(t *testing.T) {
	h := host(t)
	hk := newHook(t, status(400))
	a := fast()
	req := fire(h, nodeFailure(t), with(hk.URL, "json"))
	if _, err := a.Execute(ctxT(t), req); err == nil {
		t.Fatal("400 accepted")
	}
	if _, err := a.Execute(ctxT(t), req); err != nil {
		t.Fatalf("second try: %v", err)
	}
	if n := len(hk.requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if n := a.sent.len(); n != 2 { // the action's key and the incident's
		t.Fatalf("%d keys remembered, want 2", n)
	}
}

func TestParamErrors(t *testing.T) {
	h := host(t)
	a := fast()
	cases := []struct {
		with map[string]any
		want string
	}{
		{map[string]any{}, "parameter url is required"},
		{map[string]any{"url": "hooks.example.com/secret"}, "not an absolute http(s) URL"},
		{map[string]any{"url": "ftp://example.com/secret"}, "not an absolute http(s) URL"},
		{map[string]any{"url": "http://example.com", "format": "teams"}, `"teams" is not json, slack or alertmanager`},
		{map[string]any{"url": "http://example.com", "headers": "X: 1"}, "parameter headers"},
		{map[string]any{"url": "http://example.com", "headers": map[string]any{"Bad Name": "1"}}, `"Bad Name" is not a header name`},
		{map[string]any{"url": "http://example.com", "fromat": "slack"}, "unknown parameter(s) fromat"},
	}
	for _, c := range cases {
		_, err := a.Execute(ctxT(t), fire(h, nodeFailure(t), c.with))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.with, err, c.want)
		}
		if !sdk.IsPermanent(err) {
			t.Errorf("%v: a bad parameter is not a permanent failure", c.with)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the URL: %v", err)
		}
	}
	noNode := env(t, events.TypeNodeDown, "n0", "inc-n0", tDown, events.NodeDown{Pattern: "node-failure"})
	if _, err := a.Execute(ctxT(t), fire(h, noNode, with("http://example.com", "alertmanager"))); err == nil || !strings.Contains(err.Error(), "names no node") {
		t.Errorf("node.down without node: %v", err)
	}
	// Events that are not a node or system incident are refused.
	rr := env(t, events.TypeRulesReloaded, "r1", "", tDown, events.RulesReloaded{Rules: 3})
	if _, err := a.Execute(ctxT(t), fire(h, rr, with("http://example.com", "json"))); err == nil || !strings.Contains(err.Error(), `"rules.reloaded"`) {
		t.Errorf("rules.reloaded: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	d, err := New("1.0.0").Describe(context.Background(), &sdk.DescribeRequest{})
	if err != nil || d.Name != "alerting" || d.Version != "1.0.0" {
		t.Fatalf("%+v %v", d, err)
	}
	if d.Params[0].Name != "url" || !d.Params[0].Secret || !d.Params[0].Required {
		t.Errorf("url param %+v", d.Params[0])
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 11, 23, 22, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Sat, 23 Nov 2024 22:00:05 GMT": 5 * time.Second,
		"Sat, 23 Nov 2024 21:00:00 GMT": 0,
	}
	for h, want := range cases {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

// partitionUp is eu-n's node.up of the partition, for a reason.
func partitionUp(t *testing.T, node, reason string) (up, down events.Envelope) {
	down = partitionDown(t, "p-"+node, node)
	up = nodeUp(t, down, node)
	var p events.NodeUp
	if err := up.Decode(&p); err != nil {
		t.Fatal(err)
	}
	p.Reason = reason
	up.Payload, _ = json.Marshal(p)
	return up, down
}

// A partition can end node by node: eu-1's consumer is deleted (left), eu-2
// is taken over by another rule (superseded), eu-3 heals. The resolve goes
// out once, at the end, with every node of the incident.
func TestGroupResolveWaitsForLastNode(t *testing.T) {
	h := host(t)
	for _, format := range []string{"json", "slack", "alertmanager"} {
		t.Run(format, func(t *testing.T) {
			hk := newHook(t, nil)
			a := fast()
			w := with(hk.URL, format)
			for _, n := range []string{"eu-1", "eu-2", "eu-3"} {
				if _, err := a.Execute(ctxT(t), fire(h, partitionDown(t, "p-"+n, n), w)); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(hk.requests()); n != 1 {
				t.Fatalf("%d requests on fire, want 1", n)
			}
			undo := func(node, reason string) string {
				t.Helper()
				up, down := partitionUp(t, node, reason)
				resp, err := a.Undo(ctxT(t), resolve(h, up, down, w))
				if err != nil {
					t.Fatalf("undo %s: %v", node, err)
				}
				return resp.Message
			}
			msg := undo("eu-1", events.ReasonLeft)
			if !strings.Contains(msg, "waits for eu-2, eu-3") {
				t.Errorf("message %q", msg)
			}
			undo("eu-1", events.ReasonLeft) // a retry
			undo("eu-2", events.ReasonSuperseded)
			if got := hk.requests(); len(got) != 1 {
				t.Fatalf("a resolve went out while eu-3 is still down: %s", got[len(got)-1].body)
			}
			undo("eu-3", events.ReasonCleared)
			undo("eu-3", events.ReasonCleared) // a retry
			undo("eu-2", events.ReasonSuperseded)
			got := hk.requests()
			if len(got) != 2 {
				t.Fatalf("%d requests, want the fire and one resolve", len(got))
			}
			body := got[1].body
			switch format {
			case "json":
				if !strings.Contains(body, `"type":"node.up"`) || !strings.Contains(body, `"nodeId":"eu-3"`) {
					t.Errorf("resolve %s", body)
				}
			case "slack":
				want, _ := json.Marshal(map[string]string{"text": "[RESOLVED] partition on group eu: 3 nodes (eu-1, eu-2, eu-3) resolved after 43s [rule partition]"})
				if body != string(want) {
					t.Errorf("resolve\n got %s\nwant %s", body, want)
				}
			case "alertmanager":
				var alerts []amAlert
				if err := json.Unmarshal([]byte(body), &alerts); err != nil {
					t.Fatal(err)
				}
				var nodes []string
				for _, al := range alerts {
					nodes = append(nodes, al.Labels["nodeId"])
					if al.EndsAt != "2024-11-23T22:14:02.5Z" {
						t.Errorf("alert %+v", al)
					}
				}
				if strings.Join(nodes, ",") != "eu-1,eu-2,eu-3" {
					t.Errorf("resolved alerts for %v", nodes)
				}
				if strings.Contains(got[0].body, "endsAt") {
					t.Errorf("fire has endsAt: %s", got[0].body)
				}
			}
		})
	}
}

// The resolve that failed to go out is sent by its retry, and only once.
func TestGroupResolveRetried(t *testing.T) {
	h := host(t)
	hk := newHook(t, status(200, 400))
	a := fast()
	w := with(hk.URL, "slack")
	for _, n := range []string{"eu-1", "eu-2", "eu-3"} {
		if _, err := a.Execute(ctxT(t), fire(h, partitionDown(t, "p-"+n, n), w)); err != nil {
			t.Fatal(err)
		}
	}
	undo := func(node string) error {
		up, down := partitionUp(t, node, events.ReasonCleared)
		_, err := a.Undo(ctxT(t), resolve(h, up, down, w))
		return err
	}
	for _, n := range []string{"eu-1", "eu-2"} {
		if err := undo(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := undo("eu-3"); err == nil {
		t.Fatal("a 400 on resolve was accepted")
	}
	for range 2 {
		if err := undo("eu-3"); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	if n := len(hk.requests()); n != 3 {
		t.Fatalf("%d requests, want fire, failed resolve, resolve", n)
	}
}

// A plugin that restarted mid-incident does not know which nodes went up
// before: a node.up whose condition cleared ends the group as a whole and
// sends the resolve; a node leaving does not.
func TestGroupResolveAfterRestart(t *testing.T) {
	h := host(t)
	hk := newHook(t, nil)
	w := with(hk.URL, "slack")
	up, down := partitionUp(t, "eu-1", events.ReasonLeft)
	if _, err := fast().Undo(ctxT(t), resolve(h, up, down, w)); err != nil {
		t.Fatal(err)
	}
	if n := len(hk.requests()); n != 0 {
		t.Fatalf("a node leaving sent %d requests", n)
	}
	up, down = partitionUp(t, "eu-2", events.ReasonCleared)
	if _, err := fast().Undo(ctxT(t), resolve(h, up, down, w)); err != nil {
		t.Fatal(err)
	}
	if got := hk.requests(); len(got) != 1 || !strings.Contains(got[0].body, "RESOLVED") {
		t.Fatalf("requests %+v", got)
	}
}
