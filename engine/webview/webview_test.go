package webview

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/sdk/events"
)

func TestParseQuery(t *testing.T) {
	for _, c := range []struct {
		in   string
		want query
		err  string
	}{
		{in: "", want: query{limit: DefaultLimit, sort: SortTrouble}},
		{in: "offset=40&limit=20&sort=lag&q=%20EU-1%20", want: query{offset: 40, limit: 20, sort: SortLag, q: "eu-1"}},
		{in: "group=eu&sort=id", want: query{limit: DefaultLimit, sort: SortID, group: "eu", byGroup: true}},
		{in: "group=", want: query{limit: DefaultLimit, sort: SortTrouble, byGroup: true}},
		{in: "limit=500", want: query{limit: 500, sort: SortTrouble}},
		{in: "offset=-1", err: `offset "-1": want a whole number, 0 or more`},
		{in: "offset=x", err: `offset "x"`},
		{in: "limit=0", err: `limit "0": want a whole number from 1 to 500`},
		{in: "limit=501", err: `limit "501"`},
		{in: "limit=1.5", err: `limit "1.5"`},
		{in: "sort=name", err: `sort "name": want one of trouble, id, lag`},
		{in: "q=" + strings.Repeat("x", maxQuery+1), err: "q: 201 bytes, want at most 200"},
	} {
		v, _ := url.ParseQuery(c.in)
		got, err := parseQuery(v)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseQuery(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseQuery(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

// ns is a node for table tests.
func ns(id, group string, lag int, mods ...func(*engine.NodeStatus)) engine.NodeStatus {
	n := engine.NodeStatus{State: "ok"}
	n.Key = flow.NodeKey{Stream: "ORDERS", Consumer: id}
	n.ID, n.Stream, n.Consumer, n.Group, n.MessagesWaiting = id, "ORDERS", id, group, lag
	for _, m := range mods {
		m(&n)
	}
	return n
}

func down(pattern string) func(*engine.NodeStatus) {
	return func(n *engine.NodeStatus) { n.State, n.Pattern, n.Level = "down", pattern, "critical" }
}
func stalled(n *engine.NodeStatus) { n.Stalled = true }
func behind(n *engine.NodeStatus)  { n.FallingBehind = true }
func idle(n *engine.NodeStatus)    { n.Idle = true }
func warming(n *engine.NodeStatus) { n.Warming = true }

func testStatus() *engine.Status {
	return &engine.Status{At: time.Unix(100, 0), Healthy: true, Nodes: []engine.NodeStatus{
		ns("eu-1", "eu", 5),
		ns("eu-2", "eu", 900, down("node-failure")),
		ns("eu-3", "eu", 50, behind),
		ns("us-1", "us", 70, stalled),
		ns("us-2", "us", 400),
		ns("us-3", "us", 0, idle),
		ns("solo", "", 7, warming),
	}}
}

func ids(rows []*row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.n.ID)
	}
	return out
}

func TestNodeStates(t *testing.T) {
	s := newSnapshot(1, testStatus(), time.Second)
	got := map[string]string{}
	for _, r := range s.rows {
		got[r.n.ID] = r.state
	}
	want := map[string]string{"eu-1": "ok", "eu-2": "down", "eu-3": "behind", "us-1": "stalled", "us-2": "ok", "us-3": "idle", "solo": "warming"}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("%s state %q, want %q", id, got[id], st)
		}
	}
}

func TestPageSortFilterBounds(t *testing.T) {
	s := newSnapshot(1, testStatus(), time.Second)
	all := query{limit: 100, sort: SortTrouble}
	for _, c := range []struct {
		name  string
		q     query
		want  []string
		total int
	}{
		{"trouble first, then the most waiting", all, []string{"eu-2", "us-1", "eu-3", "us-2", "solo", "eu-1", "us-3"}, 7},
		{"by id", query{limit: 100, sort: SortID}, []string{"eu-1", "eu-2", "eu-3", "solo", "us-1", "us-2", "us-3"}, 7},
		{"by lag", query{limit: 100, sort: SortLag}, []string{"eu-2", "us-2", "us-1", "eu-3", "solo", "eu-1", "us-3"}, 7},
		{"one group", query{limit: 100, sort: SortID, group: "us", byGroup: true}, []string{"us-1", "us-2", "us-3"}, 3},
		{"the ungrouped", query{limit: 100, sort: SortID, byGroup: true}, []string{"solo"}, 1},
		{"an unknown group", query{limit: 100, sort: SortID, group: "mars", byGroup: true}, nil, 0},
		{"filter by id", query{limit: 100, sort: SortID, q: "-2"}, []string{"eu-2", "us-2"}, 2},
		{"filter by stream/consumer", query{limit: 100, sort: SortID, q: "orders/us"}, []string{"us-1", "us-2", "us-3"}, 3},
		{"filter and group", query{limit: 100, sort: SortID, q: "-3", group: "eu", byGroup: true}, []string{"eu-3"}, 1},
		{"a page", query{offset: 2, limit: 3, sort: SortID}, []string{"eu-3", "solo", "us-1"}, 7},
		{"the last page, short", query{offset: 5, limit: 3, sort: SortID}, []string{"us-2", "us-3"}, 7},
		{"past the end", query{offset: 7, limit: 3, sort: SortID}, nil, 7},
		{"far past the end", query{offset: 1 << 30, limit: 3, sort: SortID}, nil, 7},
	} {
		rows, total := s.page(c.q)
		if got := ids(rows); !slices.Equal(got, c.want) || total != c.total {
			t.Errorf("%s: %v of %d, want %v of %d", c.name, got, total, c.want, c.total)
		}
	}
}

func TestSummary(t *testing.T) {
	st := testStatus()
	st.Groups = []flow.Group{{Name: "eu", Size: 3, ArrivalRate: 12}, {Name: "us", Size: 3}}
	var nodes []string
	for i := range 30 {
		nodes = append(nodes, fmt.Sprint("n", i))
	}
	st.Incidents = []engine.IncidentState{
		{ID: "old", Pattern: "node-failure", Since: time.Unix(10, 0), Nodes: []string{"eu-2"}},
		{ID: "new", Pattern: "partition", Since: time.Unix(20, 0), Nodes: nodes},
	}
	sum := newSnapshot(3, st, 500*time.Millisecond).summary()
	if sum.Totals.Nodes != 7 || sum.Totals.Down != 1 || sum.Totals.Stalled != 1 || sum.Totals.Behind != 1 ||
		sum.Totals.Idle != 1 || sum.Totals.Warming != 1 || sum.Totals.OK != 2 || sum.Totals.MessagesWaiting != 1432 {
		t.Fatalf("totals %+v", sum.Totals)
	}
	var names []string
	for _, g := range sum.Groups {
		names = append(names, g.Name)
	}
	// eu has the node down, so it comes first; us has trouble too; the
	// ungrouped node last.
	if !slices.Equal(names, []string{"eu", "us", ""}) {
		t.Fatalf("groups %q", names)
	}
	if eu := sum.Groups[0]; eu.Nodes != 3 || eu.Down != 1 || eu.Behind != 1 || eu.OK != 1 || eu.ArrivalRate != 12 || eu.MessagesWaiting != 955 {
		t.Fatalf("eu %+v", eu)
	}
	if len(sum.Incidents) != 2 || sum.Incidents[0].ID != "new" || sum.IncidentCount != 2 {
		t.Fatalf("incidents %+v, want the newest first", sum.Incidents)
	}
	if in := sum.Incidents[0]; len(in.Nodes) != maxIncidentNodes || in.NodeCount != 30 {
		t.Fatalf("incident carries %d of %d nodes, want %d of 30", len(in.Nodes), in.NodeCount, maxIncidentNodes)
	}
	if sum.Interval != 0.5 || sum.Tick != 3 {
		t.Fatalf("interval %v tick %d", sum.Interval, sum.Tick)
	}
}

func TestPointsJSON(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		in   points
		want string
	}{
		{nil, "[]"},
		{points{nan, nan}, "[]"},
		{points{nan, 1, nan, 2.5, 1e6}, "[1,null,2.5,1e+06]"},
		{points{0, 3}, "[0,3]"},
	} {
		b, err := json.Marshal(c.in)
		if err != nil || string(b) != c.want {
			t.Errorf("%v: %s, %v; want %s", c.in, b, err, c.want)
		}
	}
}

// source is a Source over a fixed status and events, ticked by hand.
type source struct {
	mu     sync.Mutex
	st     *engine.Status
	events []events.Envelope
	bell   chan struct{}
	tick   uint64
}

func newSource(st *engine.Status, evs ...events.Envelope) *source {
	return &source{st: st, events: evs, bell: make(chan struct{}), tick: 1}
}

// step is one tick: st is the new status, evs were published meanwhile.
func (s *source) step(st *engine.Status, evs ...events.Envelope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st, s.tick = st, s.tick+1
	s.events = append(s.events, evs...)
	close(s.bell)
	s.bell = make(chan struct{})
}

func (s *source) Health() (bool, string) { return true, "" }
func (s *source) Status() *engine.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}
func (s *source) Ticks() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tick, s.bell
}
func (s *source) Interval() time.Duration { return time.Second }
func (s *source) LagHistory(keys []flow.NodeKey) engine.LagHistory {
	out := engine.LagHistory{Step: 5 * time.Second, Series: make([][]float32, len(keys))}
	for i := range keys {
		out.Series[i] = []float32{float32(math.NaN()), 1, 2}
	}
	return out
}
func (s *source) RecentEvents(f engine.EventFilter) []events.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []events.Envelope
	for _, e := range s.events {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

func env(id string, ms int64, typ string, p any) events.Envelope {
	raw, _ := json.Marshal(p)
	return events.Envelope{Type: typ, Payload: raw, Context: events.Context{ID: id, Timestamp: ms}}
}

func TestEventCursor(t *testing.T) {
	var evs []events.Envelope
	for i := range RecentEventsShown + 5 {
		evs = append(evs, env(fmt.Sprint("e", i), 1000, events.TypeNodeDown, events.NodeDown{NodeID: "eu-2"}))
	}
	src := newSource(testStatus(), evs...)
	var c eventCursor
	first, reset := c.next(src)
	if !reset || len(first) != RecentEventsShown || first[0].ID != fmt.Sprint("e", RecentEventsShown+4) {
		t.Fatalf("first call: %d events from %v (reset %v), want the last %d newest first", len(first), first[0].ID, reset, RecentEventsShown)
	}
	if again, reset := c.next(src); len(again) != 0 || reset {
		t.Fatalf("no new events, got %d (reset %v)", len(again), reset)
	}
	// Two more in the same millisecond as the last one sent, one later.
	src.step(testStatus(), env("x1", 1000, events.TypeNodeUp, events.NodeUp{NodeID: "eu-2", DownSeconds: 4}),
		env("x2", 1000, events.TypeRulesReloaded, events.RulesReloaded{Files: []string{"a.yaml"}, Rules: 3}),
		env("x3", 2000, events.TypeRulesRejected, events.RulesRejected{File: "a.yaml", Errors: []string{"a.yaml:3:5: unknown field"}}))
	got, reset := c.next(src)
	var gotIDs []string
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
	}
	if reset || !slices.Equal(gotIDs, []string{"x3", "x2", "x1"}) {
		t.Fatalf("new events %v (reset %v), want x3 x2 x1", gotIDs, reset)
	}
	if got[2].Detail != "after 4.0s" || got[1].Detail != "3 rules from a.yaml" || got[0].Detail != "a.yaml:3:5: unknown field" {
		t.Fatalf("details %q, %q, %q", got[2].Detail, got[1].Detail, got[0].Detail)
	}
}

func serve(t *testing.T, src Source) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Register(mux, src, Options{Heartbeat: 50 * time.Millisecond})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNodesEndpoint(t *testing.T) {
	srv := serve(t, newSource(testStatus()))
	code, body := get(t, srv.URL+"/api/nodes?limit=2&offset=1&sort=id")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var p struct {
		Total, Offset, Limit int
		History              struct{ Step float64 }
		Nodes                []struct {
			ID, State string
			Points    []*float64
		}
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p.Total != 7 || p.Offset != 1 || p.Limit != 2 || len(p.Nodes) != 2 || p.Nodes[0].ID != "eu-2" || p.Nodes[0].State != "down" {
		t.Fatalf("page %+v", p)
	}
	if len(p.Nodes[0].Points) != 2 || *p.Nodes[0].Points[1] != 2 || p.History.Step != 5 {
		t.Fatalf("points %v step %v, want [1 2] at 5s", p.Nodes[0].Points, p.History.Step)
	}
	for _, bad := range []string{"limit=0", "offset=-3", "sort=random", "limit=abc"} {
		code, body := get(t, srv.URL+"/api/nodes?"+bad)
		if code != http.StatusBadRequest || !strings.HasPrefix(body, "bad request: ") {
			t.Errorf("%s: %d %q, want 400 with a message", bad, code, body)
		}
	}
	for _, path := range []string{"/nowhere", "/assets/", "/assets/nothing.js", "/api/"} {
		if code, _ := get(t, srv.URL+path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	for _, path := range []string{"/", "/assets/app.js", "/assets/style.css", "/assets/theme.js"} {
		if code, body := get(t, srv.URL+path); code != 200 || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", path, code, len(body))
		}
	}
}

// sseReader reads a server-sent event stream.
type sseReader struct {
	t *testing.T
	r *bufio.Reader
}

// next returns the next message's data, or the next comment when
// comments is set.
func (s sseReader) next(comments bool) string {
	s.t.Helper()
	var data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && data != "":
			return data
		case strings.HasPrefix(line, ":") && comments:
			return line
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

type streamMessage struct {
	Tick        uint64
	Totals      counts
	Events      []eventView
	EventsReset bool
}

func (s sseReader) message() streamMessage {
	s.t.Helper()
	var m streamMessage
	data := s.next(false)
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		s.t.Fatalf("message %s: %v", data, err)
	}
	return m
}

func TestStreamSendsOnEachTickAndKeepsAlive(t *testing.T) {
	src := newSource(testStatus(), env("a", 1000, events.TypeNodeDown, events.NodeDown{NodeID: "eu-2", Pattern: "node-failure"}))
	srv := serve(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := sseReader{t, bufio.NewReader(resp.Body)}
	m := r.message()
	if m.Tick != 1 || m.Totals.Nodes != 7 || !m.EventsReset || len(m.Events) != 1 || m.Events[0].Node != "eu-2" {
		t.Fatalf("first message %+v", m)
	}
	// No tick: the stream keeps alive with a comment.
	if c := r.next(true); c != ": keep-alive" {
		t.Fatalf("comment %q, want a keep-alive", c)
	}
	st := testStatus()
	st.Nodes = st.Nodes[:3]
	src.step(st, env("b", 2000, events.TypeNodeUp, events.NodeUp{NodeID: "eu-2"}))
	m = r.message()
	if m.Tick != 2 || m.Totals.Nodes != 3 || m.EventsReset || len(m.Events) != 1 || m.Events[0].ID != "b" {
		t.Fatalf("second message %+v", m)
	}
}
