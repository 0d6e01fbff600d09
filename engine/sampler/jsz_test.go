package sampler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sysServers starts n JetStream servers (routed into a cluster when n > 1)
// with the account APP (user app) and the system account SYS (user sys).
func sysServers(t testing.TB, n int) []*server.Server {
	t.Helper()
	if n == 1 {
		return []*server.Server{testutil.RunServer(t, testutil.WithSystemAccount)}
	}
	out := testutil.RunCluster(t, n, testutil.WithSystemAccount)
	nc := testutil.Connect(t, out[0].ClientURL(), testutil.As(testutil.AppUser))
	js := testutil.JetStream(t, nc)
	testutil.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	}, "JetStream cluster ready")
	return out
}

// sysEnv is an application connection and a system connection, with a
// listing sampler and a system access sampler on them.
type sysEnv struct {
	t       testing.TB
	nc, sys *nats.Conn
	js      jetstream.JetStream
	listing *sampler.Sampler
	jsz     *sampler.Sampler
	logs    *testutil.LogBuffer
	lists   atomic.Int64 // CONSUMER.LIST requests seen
}

func newSysEnv(t testing.TB, url string, sys *nats.Conn) *sysEnv {
	t.Helper()
	e := &sysEnv{t: t, logs: &testutil.LogBuffer{}}
	e.nc = testutil.Connect(t, url, nats.UserInfo("app", "app"))
	e.js = testutil.JetStream(t, e.nc)
	if sys == nil {
		sys = testutil.Connect(t, url, nats.UserInfo("sys", "sys"))
	}
	e.sys = sys
	mon := testutil.Connect(t, url, nats.UserInfo("app", "app"))
	if _, err := mon.Subscribe("$JS.API.CONSUMER.LIST.>", func(*nats.Msg) { e.lists.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := mon.Flush(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.listing = sampler.New(e.nc, sampler.Config{Logger: slog.New(slog.DiscardHandler)})
	e.jsz = sampler.New(e.nc, sampler.Config{Logger: log, System: sys})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, s := range []*sampler.Sampler{e.listing, e.jsz} {
		if err := s.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		t.Cleanup(s.Stop)
	}
	return e
}

func (e *sysEnv) sample(s *sampler.Sampler) flow.Snapshot {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := s.Sample(ctx)
	if err != nil {
		e.t.Fatalf("sample: %v", err)
	}
	return snap
}

func (e *sysEnv) noErrors() {
	e.t.Helper()
	if recs := e.logs.Records(e.t, slog.LevelError); len(recs) > 0 {
		e.t.Fatalf("the system access sampler logged errors: %v", recs)
	}
}

// workload makes streams and consumers of every kind the sampler treats
// apart, with messages waiting, delivered and acknowledged.
func (e *sysEnv) workload(replicas int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := e.js
	must := func(what string, err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: replicas,
		MaxMsgs: 10_000, MaxAge: time.Hour, Discard: jetstream.DiscardNew})
	must("stream ORDERS", err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "EMPTY", Subjects: []string{"empty"}, Replicas: replicas})
	must("stream EMPTY", err)
	consumers := []jetstream.ConsumerConfig{
		{Durable: "plain", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 7 * time.Second},
		{Durable: "meta", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "orders.a",
			Metadata: map[string]string{sampler.MetadataNode: "billing", sampler.MetadataGroup: "pay"}},
		{Durable: "whole", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "orders.>"},
		{Durable: "multi", AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{"orders.a", "orders.b"}},
		{Durable: "odd", AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{sampler.MetadataNode: "bad.id"}},
		{Durable: "ignored", AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{sampler.MetadataIgnore: "true"}},
		{Durable: "none", AckPolicy: jetstream.AckNonePolicy},
		{Durable: "push", AckPolicy: jetstream.AckExplicitPolicy, DeliverSubject: "deliver.push"},
	}
	for _, c := range consumers {
		c.Replicas = replicas
		_, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", c)
		must("consumer "+c.Durable, err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg", Replicas: replicas})
	must("kv", err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	must("kv put", err)
	_, err = js.CreateOrUpdateConsumer(ctx, "KV_cfg", jetstream.ConsumerConfig{Durable: "kvnode", Replicas: replicas,
		Metadata: map[string]string{sampler.MetadataNode: "kvnode"}})
	must("kv node", err)
	_, err = js.CreateOrUpdateConsumer(ctx, "KV_cfg", jetstream.ConsumerConfig{Durable: "kvwatch", Replicas: replicas})
	must("kv watcher", err)
	for i := range 10 {
		_, err := js.Publish(ctx, fmt.Sprintf("orders.%c", 'a'+i%3), []byte("x"))
		must("publish", err)
	}
	c, err := js.Consumer(ctx, "ORDERS", "plain")
	must("consumer plain", err)
	batch, err := c.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	must("fetch", err)
	n := 0
	for m := range batch.Messages() {
		if n%2 == 0 {
			must("ack", m.DoubleAck(ctx))
		}
		n++
	}
	if n != 4 {
		e.t.Fatalf("fetched %d messages, want 4", n)
	}
}

// comparable strips what differs between two reads of the same state: the
// server's read times.
func comparable(snap flow.Snapshot) flow.Snapshot {
	out := flow.Snapshot{
		Streams:           slices.Clone(snap.Streams),
		Consumers:         slices.Clone(snap.Consumers),
		Unobserved:        slices.Clone(snap.Unobserved),
		UnobservedStreams: slices.Clone(snap.UnobservedStreams),
	}
	for i := range out.Streams {
		out.Streams[i].At = time.Time{}
	}
	for i := range out.Consumers {
		out.Consumers[i].At = time.Time{}
	}
	slices.SortFunc(out.Streams, func(a, b flow.StreamSample) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Consumers, func(a, b flow.ConsumerSample) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return out
}

func diffSnapshots(t testing.TB, want, got flow.Snapshot) {
	t.Helper()
	w, g := comparable(want), comparable(got)
	wj, _ := json.MarshalIndent(w, "", " ")
	gj, _ := json.MarshalIndent(g, "", " ")
	if string(wj) != string(gj) {
		t.Fatalf("system access snapshot differs from the listing's:\nlisting: %s\nsystem access: %s", wj, gj)
	}
}

// equivalent samples with both paths until they agree; between the two
// reads a server may update a time stamp (a pull request expiring), so a
// single pair may differ in passing.
func (e *sysEnv) equivalent() flow.Snapshot {
	e.t.Helper()
	var last, lastJSZ flow.Snapshot
	ok := false
	testutil.Eventually(e.t, 20*time.Second, func() bool {
		last, lastJSZ = e.sample(e.listing), e.sample(e.jsz)
		w, _ := json.Marshal(comparable(last))
		g, _ := json.Marshal(comparable(lastJSZ))
		ok = string(w) == string(g)
		return ok
	}, "the two paths agree")
	if !ok {
		diffSnapshots(e.t, last, lastJSZ)
	}
	return lastJSZ
}

func TestJSZEquivalentSingleServer(t *testing.T) {
	srv := sysServers(t, 1)[0]
	e := newSysEnv(t, srv.ClientURL(), nil)
	e.workload(1)
	snap := e.equivalent()
	if _, ok := find(snap, "ORDERS", "meta"); !ok {
		t.Fatalf("consumer meta missing: %v", keys(snap))
	}
	if c, _ := find(snap, "ORDERS", "plain"); c.NumAckPending != 2 || c.Leader != "" {
		t.Fatalf("plain: ack pending %d leader %q, want 2 and none on a single server", c.NumAckPending, c.Leader)
	}
	e.noErrors()

	// Configs are cached: the next tick lists no consumers.
	before := e.lists.Load()
	e.sample(e.jsz)
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := e.lists.Load() - before; n != 0 {
		t.Fatalf("a tick with a warm cache made %d CONSUMER.LIST requests, want 0", n)
	}
}

func TestJSZEquivalentCluster(t *testing.T) {
	servers := sysServers(t, 3)
	e := newSysEnv(t, servers[0].ClientURL(), nil)
	e.workload(3)
	snap := e.equivalent()
	leaders := map[string]bool{}
	for _, c := range snap.Consumers {
		if c.Leader == "" {
			t.Fatalf("%s: no leader in a cluster", c.Key)
		}
		leaders[c.Leader] = true
	}
	t.Logf("consumer leaders: %v", leaders)
	e.noErrors()

	// A consumer led elsewhere: step its leader down, and the values read
	// still agree with the listing, which asks the leader.
	_, err := e.nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN.ORDERS.plain", nil, 10*time.Second)
	if err != nil {
		t.Fatalf("step down: %v", err)
	}
	e.equivalent()

	// Metadata changed mid-run on an R3 consumer: seen with its new config.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "meta", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: "orders.a", Replicas: 3, Metadata: map[string]string{sampler.MetadataNode: "billing2", sampler.MetadataGroup: "pay"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, ok := find(e.sample(e.jsz), "ORDERS", "meta")
		return ok && c.NodeID == "billing2"
	}, "the updated metadata is seen in the cluster")
	e.noErrors()
}

func TestJSZConsumerChangesSeen(t *testing.T) {
	srv := sysServers(t, 1)[0]
	e := newSysEnv(t, srv.ClientURL(), nil)
	e.workload(1)
	e.equivalent()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Metadata changed on an existing consumer: no advisory of its own,
	// the API audit tells.
	if _, err := e.js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "plain", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 7 * time.Second, Metadata: map[string]string{sampler.MetadataNode: "renamed", sampler.MetadataGroup: "g2"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, ok := find(e.sample(e.jsz), "ORDERS", "plain")
		return ok && c.NodeID == "renamed" && c.Group == "g2"
	}, "the updated metadata is seen")

	// A new consumer is seen with its config on the tick it appears.
	if _, err := e.js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "late", AckPolicy: jetstream.AckNonePolicy,
		FilterSubject: "orders.b", Metadata: map[string]string{sampler.MetadataNode: "latecomer"}}); err != nil {
		t.Fatal(err)
	}
	snap := e.sample(e.jsz)
	c, ok := find(snap, "ORDERS", "late")
	if !ok || c.NodeID != "latecomer" || !c.AckNone || !c.Filtered {
		t.Fatalf("new consumer: %+v (found %v), want node latecomer, ack none, filtered", c, ok)
	}
	// Deleted: gone, not unobserved.
	if err := e.js.DeleteConsumer(ctx, "ORDERS", "late"); err != nil {
		t.Fatal(err)
	}
	snap = e.sample(e.jsz)
	if _, ok := find(snap, "ORDERS", "late"); ok || slices.Contains(snap.Unobserved, flow.NodeKey{Stream: "ORDERS", Consumer: "late"}) {
		t.Fatalf("deleted consumer still there or unobserved: %v %v", keys(snap), snap.Unobserved)
	}
	// A stream recreated with other subjects: its new config is read.
	if err := e.js.DeleteStream(ctx, "EMPTY"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "EMPTY", Subjects: []string{"e1", "e2"}, MaxMsgs: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateOrUpdateConsumer(ctx, "EMPTY", jetstream.ConsumerConfig{Durable: "one", FilterSubject: "e1"}); err != nil {
		t.Fatal(err)
	}
	snap = e.equivalent()
	if st, _ := findStream(snap, "EMPTY"); st.MaxMsgs != 5 {
		t.Fatalf("recreated stream: max msgs %d, want 5", st.MaxMsgs)
	}
	e.noErrors()
}

// A system connection that is not in the system account: nobody answers
// the JSZ request, the tick lists consumers instead and says why.
func TestJSZUnavailableFallsBack(t *testing.T) {
	srv := sysServers(t, 1)[0]
	notSys := testutil.Connect(t, srv.ClientURL(), nats.UserInfo("app", "app"))
	e := newSysEnv(t, srv.ClientURL(), notSys)
	e.workload(1)
	want := e.sample(e.listing)
	got := e.sample(e.jsz)
	diffSnapshots(t, want, got)
	errs := e.logs.Records(t, slog.LevelError)
	if len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]["error"]), "$SYS.REQ.SERVER.PING.JSZ") {
		t.Fatalf("want one error naming the JSZ request, got %v", errs)
	}
	// Still failing: listed again, not logged again.
	diffSnapshots(t, e.sample(e.listing), e.sample(e.jsz))
	if errs := e.logs.Records(t, slog.LevelError); len(errs) != 1 {
		t.Fatalf("the failure was logged %d times, want once", len(errs))
	}
}

// fakeJSZ answers the JSZ request on a connection outside the system
// account with the replies reply returns, one message each, so a test can
// play servers that disagree, stay silent or answer nonsense.
func fakeJSZ(t testing.TB, nc *nats.Conn, reply func() [][]byte) {
	t.Helper()
	if _, err := nc.Subscribe("$SYS.REQ.SERVER.PING.JSZ", func(m *nats.Msg) {
		for _, b := range reply() {
			_ = nc.Publish(m.Reply, b)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// jszReport is one fake server's report on stream ORDERS with consumer c1.
func jszReport(server, streamLeader, consumerLeader string, pending int, streamCreated, created time.Time, peers ...string) []byte {
	var replicas []string
	for _, p := range peers {
		replicas = append(replicas, fmt.Sprintf(`{"name":%q,"current":true}`, p))
	}
	return fmt.Appendf(nil, `{"server":{"name":%q,"id":"X"},"data":{"server_id":"X","now":%q,
"meta_cluster":{"name":"c","leader":%q,"replicas":[%s],"cluster_size":%d},
"account_details":[{"name":"APP","id":"APP","stream_detail":[{"name":"ORDERS","created":%q,
"cluster":{"leader":%q},"state":{"messages":10,"bytes":100,"first_seq":1,"last_seq":10,"consumer_count":1},
"consumer_detail":[{"stream_name":"ORDERS","name":"c1","created":%q,"delivered":{"consumer_seq":3,"stream_seq":3},
"ack_floor":{"consumer_seq":2,"stream_seq":2},"num_ack_pending":1,"num_redelivered":0,"num_waiting":0,"num_pending":%d,
"cluster":{"leader":%q},"ts":%q}]}]}]}}`,
		server, time.Now().UTC().Format(time.RFC3339Nano), "a", strings.Join(replicas, ","), len(peers)+1,
		streamCreated.UTC().Format(time.RFC3339Nano), streamLeader, created.UTC().Format(time.RFC3339Nano), pending, consumerLeader, time.Now().UTC().Format(time.RFC3339Nano))
}

func TestJSZLeaderValuesOnly(t *testing.T) {
	srv := sysServers(t, 1)[0]
	url := srv.ClientURL()
	fake := testutil.Connect(t, url, nats.UserInfo("app", "app"))
	var mode atomic.Value
	mode.Store("both")
	var streamCreated, created time.Time
	fakeJSZ(t, fake, func() [][]byte {
		a := jszReport("a", "a", "b", 99, streamCreated, created, "b") // a follower of c1: stale
		b := jszReport("b", "a", "b", 5, streamCreated, created, "a")  // c1's leader
		switch mode.Load() {
		case "both":
			return [][]byte{a, b}
		case "a only":
			return [][]byte{a}
		case "garbage":
			return [][]byte{[]byte(`{"server":{"name":"a"},"data":{"account_details":[{"stream_detail":[{"name":`)}
		case "error":
			return [][]byte{[]byte(`{"server":{"name":"a"},"error":{"code":500,"description":"account \"APP\" not found"}}`)}
		}
		return nil
	})
	e := &sysEnv{t: t, logs: &testutil.LogBuffer{}}
	e.nc = testutil.Connect(t, url, nats.UserInfo("app", "app"))
	e.js = testutil.JetStream(t, e.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	if err != nil {
		t.Fatal(err)
	}
	// The reports name the real stream and consumer, whose configs the
	// sampler reads from the server.
	streamCreated = st.CachedInfo().Created
	c, err := e.js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{sampler.MetadataNode: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	created = c.CachedInfo().Created
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A short timeout: the test waits it out whenever a fake server is
	// silent.
	s := sampler.New(e.nc, sampler.Config{Logger: log, System: fake, Timeout: 500 * time.Millisecond})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	snap := e.sample(s)
	got, ok := find(snap, "ORDERS", "c1")
	if !ok || got.NumPending != 5 || got.Leader != "b" || got.NodeID != "n1" || got.Delivered != 3 {
		t.Fatalf("c1 = %+v (found %v), want the leader b's values: pending 5, node n1", got, ok)
	}
	if st, _ := findStream(snap, "ORDERS"); st.LastSeq != 10 {
		t.Fatalf("stream ORDERS = %+v, want the reported last seq 10", st)
	}
	e.noErrors()

	// c1's leader b is silent while a names it live: c1 is unobserved, not
	// gone, and the stream, led by a, is still read.
	mode.Store("a only")
	snap = e.sample(s)
	if _, ok := find(snap, "ORDERS", "c1"); ok || !slices.Contains(snap.Unobserved, flow.NodeKey{Stream: "ORDERS", Consumer: "c1"}) {
		t.Fatalf("with its leader silent c1 must be unobserved: consumers %v, unobserved %v", keys(snap), snap.Unobserved)
	}
	if _, ok := findStream(snap, "ORDERS"); !ok {
		t.Fatal("stream ORDERS missing though its leader answered")
	}
	e.noErrors()

	// No report in time, once: that tick lists consumers (the server's
	// values), warns, and the next tick reads the reports again.
	mode.Store("silent")
	if got, ok := find(e.sample(s), "ORDERS", "c1"); !ok || got.NumPending != 0 {
		t.Fatalf("late reports: c1 = %+v (found %v), want the listing's pending 0", got, ok)
	}
	e.noErrors()
	if !strings.Contains(e.logs.String(), "no JSZ report in time") {
		t.Fatalf("no warning about the late reports:\n%s", e.logs.String())
	}
	mode.Store("both")
	if got, ok := find(e.sample(s), "ORDERS", "c1"); !ok || got.NumPending != 5 {
		t.Fatalf("after a late tick: c1 = %+v (found %v), want the reports' pending 5 at once", got, ok)
	}

	// Replies that do not decode, and a server's error: the tick lists
	// consumers instead, and the log names what failed.
	for _, m := range []struct{ mode, want string }{{"garbage", "decode reply"}, {"error", `account \"APP\" not found`}} {
		mode.Store(m.mode)
		s2 := sampler.New(e.nc, sampler.Config{Logger: log, System: fake, Timeout: 500 * time.Millisecond})
		snap := e.sample(s2)
		if got, ok := find(snap, "ORDERS", "c1"); !ok || got.NumPending != 0 {
			t.Fatalf("%s: the listing's c1 = %+v (found %v), want pending 0 as the server has it", m.mode, got, ok)
		}
		errs := e.logs.Records(t, slog.LevelError)
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs[len(errs)-1]["error"]), strings.ReplaceAll(m.want, `\"`, `"`)) {
			t.Fatalf("%s: want an error naming %q, got %v", m.mode, m.want, errs)
		}
	}
}

// An account no report names (a wrong Config.Account): its streams must
// not look gone; the tick lists consumers instead and says why.
func TestJSZWrongAccountFallsBack(t *testing.T) {
	srv := sysServers(t, 1)[0]
	url := srv.ClientURL()
	logs := &testutil.LogBuffer{}
	nc := testutil.Connect(t, url, nats.UserInfo("app", "app"))
	sys := testutil.Connect(t, url, nats.UserInfo("sys", "sys"))
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "c1"}); err != nil {
		t.Fatal(err)
	}
	s := sampler.New(nc, sampler.Config{System: sys, Account: "NOPE",
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	snap, err := s.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := find(snap, "ORDERS", "c1"); !ok {
		t.Fatalf("c1 missing: %v", keys(snap))
	}
	errs := logs.Records(t, slog.LevelError)
	if len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]["error"]), `account "NOPE"`) {
		t.Fatalf("want one error naming the account, got %v", errs)
	}
}
