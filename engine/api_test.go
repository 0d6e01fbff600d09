package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiEngine runs an engine with the built-in rules on a fresh server and
// returns it with a client connection.
func apiEngine(t *testing.T, mods ...func(*server.Options)) (*engine.Engine, *nats.Conn) {
	t.Helper()
	srv := testutil.RunServer(t, mods...)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng := engine.New(testutil.Connect(t, srv.ClientURL()), defaultSet(t), engine.Config{Interval: 250 * time.Millisecond, Logger: log, Instance: "api"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := eng.Run(ctx); err != nil {
			t.Errorf("engine run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	nc := testutil.Connect(t, srv.ClientURL())
	// Ready once the responders answer.
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err := nc.Request("happen.events."+engine.APIStatus, nil, time.Second)
		return err == nil
	}, "the engine answers on %s", engine.APIStatus)
	return eng, nc
}

func request(t *testing.T, nc *nats.Conn, api, body string) *nats.Msg {
	t.Helper()
	m, err := nc.Request("happen.events."+api, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("request %s %s: %v", api, body, err)
	}
	return m
}

func TestAPIRefusesBadRequests(t *testing.T) {
	_, nc := apiEngine(t)
	for _, c := range []struct{ api, body, want string }{
		{engine.APIStatus, `{"offset":`, "unexpected EOF"},
		{engine.APIStatus, `{"ofset":1}`, `unknown field "ofset"`},
		{engine.APIStatus, `{"limit":-1}`, "want 0 or more"},
		{engine.APIStatus, `[1,2]`, "cannot unmarshal array"},
		{engine.APIStatus, `{"order":"size"}`, `order "size": want "trouble" or "key"`},
		{engine.APIStatus, `{"after":"ORDERS/a"}`, `after "ORDERS/a" needs order "key"`},
		{engine.APIEvents, `{"since":"yesterday"}`, `time "yesterday": want RFC 3339`},
		{engine.APIEvents, `{"types":["node.["]}`, `event type "node.["`},
		{engine.APIEvents, `{"limit":-5}`, "limit -5"},
	} {
		m := request(t, nc, c.api, c.body)
		var reply engine.APIError
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatalf("%s %s: reply %q is not JSON: %v", c.api, c.body, m.Data, err)
		}
		if !strings.Contains(reply.Error, c.want) || !strings.Contains(reply.Error, c.api) {
			t.Errorf("%s %s: error %q, want it to name %s and say %q", c.api, c.body, reply.Error, c.api, c.want)
		}
		if m.Header.Get("Nats-Service-Error-Code") != "400" || m.Header.Get("Nats-Service-Error") != reply.Error {
			t.Errorf("%s %s: headers %v", c.api, c.body, m.Header)
		}
	}
	// Still answering, an empty body and a null one alike.
	for _, body := range []string{"", "null", "{}"} {
		var st engine.Status
		if err := json.Unmarshal(request(t, nc, engine.APIStatus, body).Data, &st); err != nil || st.Nodes == nil {
			t.Fatalf("status with body %q after bad requests: %v %+v", body, err, st)
		}
	}
}

func TestAPIStatusPages(t *testing.T) {
	eng, nc := apiEngine(t)
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 7 {
		id, group := fmt.Sprintf("n%d", i), "eu"
		if i >= 5 {
			group = "us"
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", nodeConfig(id, group)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(eng.Status().Nodes) == 7 }, "the engine sees 7 nodes")

	page := func(body string) engine.Status {
		t.Helper()
		var st engine.Status
		if err := json.Unmarshal(request(t, nc, engine.APIStatus, body).Data, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	seen := map[string]bool{}
	for off := 0; off < 7; off += 3 {
		st := page(fmt.Sprintf(`{"offset":%d,"limit":3}`, off))
		if st.Total != 7 || st.Offset != off || len(st.Nodes) != min(3, 7-off) {
			t.Fatalf("page at %d: total %d offset %d, %d nodes", off, st.Total, st.Offset, len(st.Nodes))
		}
		// Groups and incidents come with the first page only.
		if (off == 0) != (st.Groups != nil) {
			t.Errorf("page at %d: groups %v", off, st.Groups)
		}
		for _, n := range st.Nodes {
			if seen[n.ID] {
				t.Errorf("node %s on two pages", n.ID)
			}
			seen[n.ID] = true
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("pages hold %v, want %v", seen, want)
	}
	// In key order, from the last key received.
	var keyed []string
	for after := ""; ; {
		st := page(fmt.Sprintf(`{"order":"key","limit":2,"after":%q}`, after))
		if st.Total != 7 || (after == "") != (st.Groups != nil) {
			t.Fatalf("key page after %q: total %d, groups %v", after, st.Total, st.Groups)
		}
		for _, n := range st.Nodes {
			keyed = append(keyed, n.ID)
		}
		if len(st.Nodes) == 0 || st.Offset+len(st.Nodes) >= st.Total {
			break
		}
		last := st.Nodes[len(st.Nodes)-1]
		after = last.Stream + "/" + last.Consumer
	}
	if got := strings.Join(keyed, " "); got != strings.Join(want, " ") {
		t.Fatalf("key order pages: %s, want %s", got, strings.Join(want, " "))
	}
	if st := page(`{"order":"key","after":"ORDERS/n4","limit":1}`); st.Offset != 5 || len(st.Nodes) != 1 || st.Nodes[0].ID != "n5" {
		t.Fatalf("after ORDERS/n4: offset %d, %+v", st.Offset, st.Nodes)
	}
	if st := page(`{"order":"key","after":"ORDERS/n35"}`); st.Offset != 4 || st.Nodes[0].ID != "n4" {
		t.Fatalf("after ORDERS/n35, a key that is not there: offset %d, %+v", st.Offset, st.Nodes)
	}
	if st := page(`{"offset":9}`); st.Total != 7 || len(st.Nodes) != 0 {
		t.Fatalf("past the end: total %d, %d nodes", st.Total, len(st.Nodes))
	}
	if st := page(`{"group":"us"}`); st.Total != 2 || len(st.Nodes) != 2 || st.Nodes[0].Group != "us" {
		t.Fatalf("group us: %+v", st.Nodes)
	}
	if st := page(`{"node":"n3"}`); st.Total != 1 || st.Nodes[0].ID != "n3" {
		t.Fatalf("node n3: %+v", st.Nodes)
	}
	if st := page(`{"node":"ORDERS/n4"}`); st.Total != 1 || st.Nodes[0].ID != "n4" {
		t.Fatalf("node ORDERS/n4: %+v", st.Nodes)
	}
	// Nothing flows, so nothing is in trouble.
	if st := page(`{"trouble":true}`); st.Total != 0 || len(st.Nodes) != 0 {
		t.Fatalf("trouble: %+v", st.Nodes)
	}
}

// A page that would not fit the server's max_payload carries fewer nodes,
// and the rest can still be fetched.
func TestStatusPageKeepsWithinBudget(t *testing.T) {
	st := &engine.Status{Groups: []flow.Group{}, Incidents: []engine.IncidentState{}, Unobserved: []string{}}
	for i := range 100 {
		st.Nodes = append(st.Nodes, engine.NodeStatus{Node: flow.Node{ID: fmt.Sprintf("node-%03d", i), Group: "eu"}, State: "ok"})
	}
	one, err := json.Marshal(st.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	budget := 20 * len(one)
	got := map[string]bool{}
	for off := 0; off < 100; {
		b, err := engine.StatusPage(st, engine.StatusRequest{Offset: off, Limit: 100}, budget)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > budget {
			t.Fatalf("page at %d: %d bytes, budget %d", off, len(b), budget)
		}
		var page engine.Status
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		if page.Total != 100 || len(page.Nodes) == 0 || len(page.Nodes) >= 20 {
			t.Fatalf("page at %d: total %d, %d nodes", off, page.Total, len(page.Nodes))
		}
		for _, n := range page.Nodes {
			got[n.ID] = true
		}
		off += len(page.Nodes)
	}
	if len(got) != 100 {
		t.Fatalf("fetched %d distinct nodes, want 100", len(got))
	}
	if _, err := engine.StatusPage(st, engine.StatusRequest{}, len(one)/2); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("a budget below one node: %v", err)
	}
}

func TestSortTrouble(t *testing.T) {
	n := func(id string, waiting int, set func(*engine.NodeStatus)) engine.NodeStatus {
		s := engine.NodeStatus{Node: flow.Node{ID: id, MessagesWaiting: waiting}, State: "ok"}
		if set != nil {
			set(&s)
		}
		return s
	}
	down := func(level string) func(*engine.NodeStatus) {
		return func(s *engine.NodeStatus) { s.State, s.Level, s.Pattern = "down", level, "x" }
	}
	nodes := []engine.NodeStatus{
		n("ok-small", 1, nil),
		n("lagging", 5, func(s *engine.NodeStatus) { s.Lagging = true }),
		n("warn", 0, down("warning")),
		n("ok-big", 900, nil),
		n("stalled", 3, func(s *engine.NodeStatus) { s.Stalled = true }),
		n("crit-b", 10, down("critical")),
		n("behind", 50, func(s *engine.NodeStatus) { s.FallingBehind = true }),
		n("crit-a", 10, down("critical")),
		n("crit-big", 99, down("critical")),
	}
	engine.SortTrouble(nodes)
	var got []string
	for _, s := range nodes {
		got = append(got, s.ID)
	}
	want := "crit-big crit-a crit-b warn stalled behind lagging ok-big ok-small"
	if strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
	if nodes[7].Troubled() || !nodes[6].Troubled() {
		t.Fatal("Troubled disagrees with the order")
	}
}

// The engine remembers its last RecentEventsSize events, oldest first,
// filtered as asked, and a reply never exceeds the server's max_payload.
func TestRecentEvents(t *testing.T) {
	const maxPayload = 64 << 10
	eng, nc := apiEngine(t, func(o *server.Options) { o.MaxPayload = maxPayload })
	const n = engine.RecentEventsSize + 100
	for i := range n {
		node := fmt.Sprintf("node-%d", i)
		if i%2 == 0 {
			eng.PublishEvent(events.TypeNodeDown, events.NodeDown{NodeID: node, Pattern: "node-failure", Level: "critical", AffectedNodes: []string{node, "shared"}}, "c", "")
		} else {
			eng.PublishEvent(events.TypeNodeUp, events.NodeUp{NodeID: node, Pattern: "partition"}, "c", "")
		}
	}
	id := func(e events.Envelope) string {
		var p struct{ NodeID string }
		json.Unmarshal(e.Payload, &p)
		return p.NodeID
	}
	all := eng.RecentEvents(engine.EventFilter{})
	if len(all) != engine.RecentEventsSize || id(all[0]) != "node-100" || id(all[len(all)-1]) != fmt.Sprintf("node-%d", n-1) {
		t.Fatalf("ring holds %d events, %s to %s", len(all), id(all[0]), id(all[len(all)-1]))
	}
	for _, c := range []struct {
		f     engine.EventFilter
		count int
		first string
	}{
		{engine.EventFilter{Types: []string{"node.down"}}, 500, "node-100"},
		{engine.EventFilter{Types: []string{"node.*"}}, 1000, "node-100"},
		{engine.EventFilter{Types: []string{"system.*", "node.up"}}, 500, "node-101"},
		{engine.EventFilter{Pattern: "partition"}, 500, "node-101"},
		{engine.EventFilter{Node: "node-501"}, 1, "node-501"},
		{engine.EventFilter{Node: "shared"}, 500, "node-100"},
		{engine.EventFilter{Node: "node-5"}, 0, ""},
		{engine.EventFilter{Limit: 3}, 3, fmt.Sprintf("node-%d", n-3)},
		{engine.EventFilter{Types: []string{"node.down"}, Limit: 2}, 2, fmt.Sprintf("node-%d", n-4)},
		{engine.EventFilter{Since: time.Now().Add(time.Hour)}, 0, ""},
		{engine.EventFilter{Since: time.UnixMilli(all[0].Context.Timestamp)}, 1000, "node-100"},
	} {
		got := eng.RecentEvents(c.f)
		if len(got) != c.count || (c.count > 0 && id(got[0]) != c.first) {
			first := ""
			if len(got) > 0 {
				first = id(got[0])
			}
			t.Errorf("%+v: %d events from %s, want %d from %s", c.f, len(got), first, c.count, c.first)
		}
	}

	// Over NATS: the same, within max_payload, the newest kept.
	var reply engine.EventsReply
	m := request(t, nc, engine.APIEvents, "")
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if len(m.Data) > maxPayload || reply.Omitted == 0 || len(reply.Events)+reply.Omitted != engine.RecentEventsSize ||
		reply.Events[len(reply.Events)-1].Context.ID != all[len(all)-1].Context.ID {
		t.Fatalf("reply of %d bytes: %d events, %d omitted", len(m.Data), len(reply.Events), reply.Omitted)
	}
	since := time.UnixMilli(all[len(all)-1].Context.Timestamp).UTC().Format(time.RFC3339Nano)
	for _, body := range []string{
		`{"types":["node.up"],"node":"node-1099","since":"` + since + `"}`,
		fmt.Sprintf(`{"types":["node.up"],"node":"node-1099","since":%d}`, all[len(all)-1].Context.Timestamp),
		`{"pattern":"partition","limit":1}`,
	} {
		reply = engine.EventsReply{}
		if err := json.Unmarshal(request(t, nc, engine.APIEvents, body).Data, &reply); err != nil {
			t.Fatal(err)
		}
		if len(reply.Events) != 1 || id(reply.Events[0]) != "node-1099" || reply.Omitted != 0 {
			t.Fatalf("%s: %d events, %d omitted", body, len(reply.Events), reply.Omitted)
		}
	}
}
