package hostapi_test

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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
)

func setup(t *testing.T, opts ...hostapi.Option) (sdk.Host, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	return hostapi.New(nc, opts...), nc, js
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// makeConsumer creates stream ORDERS and a durable pull consumer on it.
func makeConsumer(t *testing.T, js jetstream.JetStream, cfg jetstream.ConsumerConfig) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", cfg); err != nil {
		t.Fatalf("create consumer: %v", err)
	}
}

func TestPublish(t *testing.T) {
	h, nc, _ := setup(t)
	sub, err := nc.SubscribeSync("happen.control.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// No deadline on the context: the host supplies one.
	if err := h.Publish(context.Background(), "happen.control.partition", []byte(`{"active":true}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no message: %v", err)
	}
	if m.Subject != "happen.control.partition" || string(m.Data) != `{"active":true}` {
		t.Fatalf("got %s %s", m.Subject, m.Data)
	}
}

func TestPublishRejectsBadSubjects(t *testing.T) {
	h, _, _ := setup(t)
	for _, subj := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a.b c", "a.b\tc", ">"} {
		err := h.Publish(ctxT(t), subj, nil)
		if err == nil {
			t.Errorf("publish on %q: no error", subj)
			continue
		}
		if !strings.Contains(err.Error(), "hostapi: publish") {
			t.Errorf("publish on %q: error %q does not say what failed", subj, err)
		}
	}
}

func TestPublishOnClosedConnection(t *testing.T) {
	h, nc, _ := setup(t)
	nc.Close()
	if err := h.Publish(ctxT(t), "a.b", nil); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("want connection closed, got %v", err)
	}
}

func TestKVRoundTrip(t *testing.T) {
	h, _, js := setup(t)
	ctx := ctxT(t)

	// Missing bucket: not found, no error, and nothing created.
	if v, found, err := h.KVGet(ctx, "happen_modes", "partition"); err != nil || found || v != nil {
		t.Fatalf("missing bucket: %q %v %v", v, found, err)
	}
	if _, err := js.KeyValue(ctx, "happen_modes"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("KVGet created the bucket: %v", err)
	}
	// Deleting from a missing bucket is done already.
	if err := h.KVDelete(ctx, "happen_modes", "partition"); err != nil {
		t.Fatalf("delete in missing bucket: %v", err)
	}

	if err := h.KVPut(ctx, "happen_modes", "partition", []byte("v1")); err != nil {
		t.Fatalf("put creating bucket: %v", err)
	}
	if v, found, err := h.KVGet(ctx, "happen_modes", "partition"); err != nil || !found || string(v) != "v1" {
		t.Fatalf("get: %q %v %v", v, found, err)
	}
	// Missing key in an existing bucket.
	if _, found, err := h.KVGet(ctx, "happen_modes", "other"); err != nil || found {
		t.Fatalf("missing key: %v %v", found, err)
	}
	if err := h.KVPut(ctx, "happen_modes", "partition", []byte("v2")); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	// The value is visible to an ordinary KV client.
	kv, err := js.KeyValue(ctx, "happen_modes")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "partition"); err != nil || string(e.Value()) != "v2" {
		t.Fatalf("kv client reads %v %v", e, err)
	}
	if err := h.KVDelete(ctx, "happen_modes", "partition"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, found, err := h.KVGet(ctx, "happen_modes", "partition"); err != nil || found {
		t.Fatalf("after delete: %v %v", found, err)
	}
	// Deleting again is fine.
	if err := h.KVDelete(ctx, "happen_modes", "partition"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestKVPutCreatesBucketOnceUnderContention(t *testing.T) {
	h, _, _ := setup(t)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			errs <- h.KVPut(ctx, "contended", fmt.Sprintf("k%d", i), []byte("x"))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent put: %v", err)
		}
	}
	for i := range 8 {
		if _, found, err := h.KVGet(ctx, "contended", fmt.Sprintf("k%d", i)); err != nil || !found {
			t.Fatalf("k%d: %v %v", i, found, err)
		}
	}
}

func TestKVRejectsBadNames(t *testing.T) {
	h, _, _ := setup(t)
	ctx := ctxT(t)
	cases := []struct{ bucket, key, want string }{
		{"", "k", "empty bucket name"},
		{"bad.name", "k", `bucket name "bad.name"`},
		{"bad name", "k", `bucket name "bad name"`},
		{"b", "", "empty key"},
		{"b", ".k", "empty token"},
		{"b", "k.", "empty token"},
		{"b", "a..b", "empty token"},
		{"b", "a b", `key "a b"`},
		{"b", "a*", `key "a*"`},
		{"b", "a>", `key "a>"`},
	}
	for _, c := range cases {
		_, _, gerr := h.KVGet(ctx, c.bucket, c.key)
		perr := h.KVPut(ctx, c.bucket, c.key, []byte("x"))
		derr := h.KVDelete(ctx, c.bucket, c.key)
		for op, err := range map[string]error{"get": gerr, "put": perr, "delete": derr} {
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "kv "+op) {
				t.Errorf("%s %q/%q: got %v, want error containing %q", op, c.bucket, c.key, err, c.want)
			}
		}
	}
}

func TestConsumerConfig(t *testing.T) {
	h, _, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{
		Durable:       "orders-eu-1",
		FilterSubject: "orders.eu.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       7 * time.Second,
		MaxAckPending: 100,
		Metadata:      map[string]string{"happen.node": "orders-eu-1", "happen.group": "eu"},
	})
	raw, err := h.ConsumerConfig(ctxT(t), "ORDERS", "orders-eu-1")
	if err != nil {
		t.Fatalf("consumer config: %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("config is not JSON: %v: %s", err, raw)
	}
	want := map[string]any{
		"durable_name":    "orders-eu-1",
		"filter_subject":  "orders.eu.>",
		"ack_policy":      "explicit",
		"ack_wait":        float64(7 * time.Second),
		"max_ack_pending": float64(100),
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %v, want %v (config %s)", k, cfg[k], v, raw)
		}
	}
	if md, _ := cfg["metadata"].(map[string]any); md["happen.group"] != "eu" {
		t.Errorf("metadata = %v", cfg["metadata"])
	}
}

func TestConsumerConfigErrors(t *testing.T) {
	h, _, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{Durable: "c1"})
	ctx := ctxT(t)

	_, err := h.ConsumerConfig(ctx, "NOPE", "c1")
	if !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "NOPE/c1") {
		t.Errorf("missing stream: %v", err)
	}
	_, err = h.ConsumerConfig(ctx, "ORDERS", "nope")
	if !errors.Is(err, jetstream.ErrConsumerNotFound) || !strings.Contains(err.Error(), "ORDERS/nope") {
		t.Errorf("missing consumer: %v", err)
	}
	for _, c := range [][2]string{{"", "c1"}, {"ORDERS", ""}, {"OR.DERS", "c1"}, {"ORDERS", "c*"}, {"ORDERS", "c 1"}} {
		if _, err := h.ConsumerConfig(ctx, c[0], c[1]); err == nil || !strings.Contains(err.Error(), "name") {
			t.Errorf("%q/%q: got %v", c[0], c[1], err)
		}
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(ctxT(t), stream, name)
	if err != nil {
		t.Fatalf("consumer %s/%s: %v", stream, name, err)
	}
	return c.CachedInfo()
}

func TestUpdateConsumer(t *testing.T) {
	h, _, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{
		Durable:       "orders-eu-1",
		Description:   "eu orders",
		FilterSubject: "orders.eu.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       7 * time.Second,
		MaxAckPending: 100,
		Metadata:      map[string]string{"happen.node": "orders-eu-1"},
	})
	ctx := ctxT(t)
	if err := h.UpdateConsumer(ctx, "ORDERS", "orders-eu-1", map[string]any{
		"max_ack_pending": 10,
		"description":     "throttled",
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	ci := consumerInfo(t, js, "ORDERS", "orders-eu-1")
	if ci.Config.MaxAckPending != 10 || ci.Config.Description != "throttled" {
		t.Fatalf("not updated: %+v", ci.Config)
	}
	// Everything not patched is as it was.
	if ci.Config.AckWait != 7*time.Second || ci.Config.FilterSubject != "orders.eu.>" ||
		ci.Config.Metadata["happen.node"] != "orders-eu-1" || ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatalf("unpatched fields changed: %+v", ci.Config)
	}
	// Values arrive as float64 from decoded JSON; whole numbers still fit.
	if err := h.UpdateConsumer(ctx, "ORDERS", "orders-eu-1", map[string]any{"max_ack_pending": float64(100)}); err != nil {
		t.Fatalf("update with float: %v", err)
	}
	if got := consumerInfo(t, js, "ORDERS", "orders-eu-1").Config.MaxAckPending; got != 100 {
		t.Fatalf("max_ack_pending = %d, want 100", got)
	}
}

func TestUpdatePushConsumer(t *testing.T) {
	h, _, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{
		Durable:        "push-1",
		DeliverSubject: "deliver.push-1",
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxAckPending:  50,
	})
	if err := h.UpdateConsumer(ctxT(t), "ORDERS", "push-1", map[string]any{"max_ack_pending": 5}); err != nil {
		t.Fatalf("update: %v", err)
	}
	raw, err := h.ConsumerConfig(ctxT(t), "ORDERS", "push-1")
	if err != nil {
		t.Fatal(err)
	}
	var cfg jetstream.ConsumerConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxAckPending != 5 || cfg.DeliverSubject != "deliver.push-1" {
		t.Fatalf("config: %s", raw)
	}
}

func TestUpdateConsumerErrors(t *testing.T) {
	h, _, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 100})
	ctx := ctxT(t)
	cases := []struct {
		name, stream, consumer string
		patch                  map[string]any
		want                   []string
		is                     error
	}{
		{"unknown field", "ORDERS", "c1", map[string]any{"max_ackpending": 1, "zzz": 2},
			[]string{"ORDERS/c1", `unknown consumer config field(s) ["max_ackpending" "zzz"]`}, nil},
		{"wrong type", "ORDERS", "c1", map[string]any{"max_ack_pending": "ten"},
			[]string{"ORDERS/c1", "invalid"}, nil},
		{"not updatable", "ORDERS", "c1", map[string]any{"ack_policy": "none"},
			[]string{"ORDERS/c1", "ack policy can not be updated"}, nil},
		{"empty patch", "ORDERS", "c1", map[string]any{}, []string{"ORDERS/c1", "empty patch"}, nil},
		{"missing stream", "NOPE", "c1", map[string]any{"max_ack_pending": 1}, []string{"NOPE/c1"}, jetstream.ErrStreamNotFound},
		{"missing consumer", "ORDERS", "nope", map[string]any{"max_ack_pending": 1}, []string{"ORDERS/nope"}, jetstream.ErrConsumerNotFound},
		{"bad name", "ORDERS", "a.b", map[string]any{"max_ack_pending": 1}, []string{`consumer name "a.b"`}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := h.UpdateConsumer(ctx, c.stream, c.consumer, c.patch)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
		})
	}
	// None of the failures changed the consumer.
	if got := consumerInfo(t, js, "ORDERS", "c1").Config.MaxAckPending; got != 100 {
		t.Fatalf("max_ack_pending = %d after failed updates", got)
	}
}

func TestDomain(t *testing.T) {
	s := testutil.RunServer(t, func(o *server.Options) { o.JetStreamDomain = "hub" })
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	makeConsumer(t, js, jetstream.ConsumerConfig{Durable: "c1"})
	ctx := ctxT(t)

	h := hostapi.New(nc, hostapi.WithDomain("hub"))
	if _, err := h.ConsumerConfig(ctx, "ORDERS", "c1"); err != nil {
		t.Fatalf("consumer config in domain hub: %v", err)
	}
	if err := h.KVPut(ctx, "b", "k", []byte("v")); err != nil {
		t.Fatalf("kv put in domain hub: %v", err)
	}
	wrong := hostapi.New(nc, hostapi.WithDomain("elsewhere"), hostapi.WithTimeout(time.Second))
	_, err := wrong.ConsumerConfig(ctx, "ORDERS", "c1")
	if !errors.Is(err, nats.ErrNoResponders) || !strings.Contains(err.Error(), "$JS.elsewhere.API.CONSUMER.INFO.ORDERS.c1") {
		t.Fatalf("wrong domain: %v", err)
	}
}

func TestNoJetStream(t *testing.T) {
	s := testutil.RunServer(t, func(o *server.Options) { o.JetStream = false })
	nc := testutil.Connect(t, s.ClientURL())
	h := hostapi.New(nc)
	ctx := ctxT(t)
	if _, err := h.ConsumerConfig(ctx, "ORDERS", "c1"); err == nil || !strings.Contains(err.Error(), "ORDERS/c1") {
		t.Fatalf("consumer config without JetStream: %v", err)
	}
	if err := h.KVPut(ctx, "b", "k", nil); err == nil || !strings.Contains(err.Error(), "kv put b/k") {
		t.Fatalf("kv put without JetStream: %v", err)
	}
	// Plain publishing needs no JetStream.
	if err := h.Publish(ctx, "a.b", nil); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// A plugin acts on the engine's connection, so NATS's own APIs, reply
// inboxes and the engine's event subjects are refused, and refusing them
// has no effect on the server.
func TestPublishRefusesReservedSubjects(t *testing.T) {
	h, nc, js := setup(t)
	makeConsumer(t, js, jetstream.ConsumerConfig{Durable: "c1"})
	ctx := ctxT(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "happen_modes"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "partition", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	// Anything published on these would be delivered to nc before the
	// host's flush returns, since the host publishes on nc too.
	var subs []*nats.Subscription
	// (Not _INBOX.>: the replies to this test's own requests arrive there.)
	for _, s := range []string{"happen.events", "happen.events.>", "_INBOX", "_INBOX.abc"} {
		sub, err := nc.SubscribeSync(s)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ subject, why string }{
		{"$JS.API.CONSUMER.DELETE.ORDERS.c1", `"$"`},
		{"$JS.API.STREAM.DELETE.ORDERS", `"$"`},
		{"$JS.API.STREAM.PURGE.ORDERS", `"$"`},
		{"$JS.hub.API.STREAM.DELETE.ORDERS", `"$"`},
		{"$KV.happen_modes.partition", `"$"`},
		{"$SYS.REQ.SERVER.PING", `"$"`},
		{"$JS.ACK.ORDERS.c1.1.1.1.0.0", `"$"`},
		{"_INBOX.abc", "_INBOX."},
		{"_INBOX", "_INBOX."},
		{"happen.events", `event prefix "happen.events"`},
		{"happen.events.node.down", `event prefix "happen.events"`},
		{"happen.events.action.failed", `event prefix "happen.events"`},
	}
	for _, c := range cases {
		err := h.Publish(ctx, c.subject, []byte(`{}`))
		if err == nil {
			t.Errorf("publish on %q: no error", c.subject)
			continue
		}
		for _, w := range []string{"hostapi: publish", fmt.Sprintf("%q", c.subject), "refused", c.why} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("publish on %q: error %q lacks %q", c.subject, err, w)
			}
		}
	}
	if _, err := js.Stream(ctx, "ORDERS"); err != nil {
		t.Errorf("stream ORDERS: %v", err)
	}
	if _, err := js.Consumer(ctx, "ORDERS", "c1"); err != nil {
		t.Errorf("consumer ORDERS/c1: %v", err)
	}
	if e, err := kv.Get(ctx, "partition"); err != nil || string(e.Value()) != "kept" {
		t.Errorf("happen_modes/partition changed: %v %v", e, err)
	}
	for _, sub := range subs {
		if n, _, _ := sub.Pending(); n != 0 {
			m, _ := sub.NextMsg(0)
			t.Errorf("%d message(s) reached %s, first on %s", n, sub.Subject, m.Subject)
		}
	}
}

// What the built-in plugins and the example plugin publish to stays open,
// and so does anything merely resembling a reserved subject.
func TestPublishAllowsPluginSubjects(t *testing.T) {
	h, nc, _ := setup(t)
	sub, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	subjects := []string{
		"happen.control.partition",         // partition-mode
		"happen.control.backpressure.n-1",  // backpressure
		"ops.incidents",                    // the example plugin, as docs/plugins.md configures it
		"happen.eventsx.node.down",         // not under happen.events
		"happen",                           // nor is its parent
		"_INBOXES.x", "JS.API.STREAM.INFO", // not reserved without a custom inbox or API prefix
	}
	for _, s := range subjects {
		if err := h.Publish(ctxT(t), s, nil); err != nil {
			t.Errorf("publish on %q: %v", s, err)
			continue
		}
		if m, err := sub.NextMsg(5 * time.Second); err != nil || m.Subject != s {
			t.Errorf("publish on %q: got %v %v", s, m, err)
		}
	}
}

// The event prefix, a custom JetStream API prefix and a custom inbox prefix
// are refused as the defaults are; the default prefix is then open.
func TestPublishRefusesConfiguredPrefixes(t *testing.T) {
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL(), nats.CustomInboxPrefix("_R_.engine"))
	h := hostapi.New(nc, hostapi.WithEventPrefix("acme.ev"), hostapi.WithAPIPrefix("JS.acct.API"))
	ctx := ctxT(t)
	for subj, why := range map[string]string{
		"acme.ev":                      `event prefix "acme.ev"`,
		"acme.ev.node.down":            `event prefix "acme.ev"`,
		"JS.acct.API.STREAM.DELETE.OR": `JetStream API (prefix "JS.acct.API.")`,
		"_R_.engine.abc":               "_R_.engine.",
		"_INBOX.abc":                   "_INBOX.",
		"$JS.API.STREAM.DELETE.OR":     `"$"`,
	} {
		err := h.Publish(ctx, subj, nil)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q refused", subj)) || !strings.Contains(err.Error(), why) {
			t.Errorf("publish on %q: got %v, want it refused for %s", subj, err, why)
		}
	}
	for _, subj := range []string{"happen.events.node.down", "acme.events", "_R_.other"} {
		if err := h.Publish(ctx, subj, nil); err != nil {
			t.Errorf("publish on %q: %v", subj, err)
		}
	}
}

// The engine's state bucket is not a plugin's: no get, put or delete.
func TestKVRefusesEngineStateBucket(t *testing.T) {
	h, _, js := setup(t)
	ctx := ctxT(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "happen_engine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "incident.abc", []byte("open")); err != nil {
		t.Fatal(err)
	}
	_, _, gerr := h.KVGet(ctx, "happen_engine", "incident.abc")
	perr := h.KVPut(ctx, "happen_engine", "incident.abc", []byte("forged"))
	derr := h.KVDelete(ctx, "happen_engine", "incident.abc")
	for op, err := range map[string]error{"get": gerr, "put": perr, "delete": derr} {
		if err == nil || !strings.Contains(err.Error(), "hostapi: kv "+op) ||
			!strings.Contains(err.Error(), "bucket happen_engine refused") || !strings.Contains(err.Error(), "engine's own state") {
			t.Errorf("%s happen_engine/incident.abc: got %v, want it refused", op, err)
		}
	}
	if e, err := kv.Get(ctx, "incident.abc"); err != nil || string(e.Value()) != "open" {
		t.Fatalf("engine state changed: %v %v", e, err)
	}
}

// WithStateBucket moves the refusal to the bucket named.
func TestKVRefusesConfiguredStateBucket(t *testing.T) {
	h, _, _ := setup(t, hostapi.WithStateBucket("eng_state"))
	ctx := ctxT(t)
	if err := h.KVPut(ctx, "eng_state", "k", []byte("v")); err == nil || !strings.Contains(err.Error(), "bucket eng_state refused") {
		t.Errorf("put eng_state/k: %v", err)
	}
	if err := h.KVDelete(ctx, "eng_state", "k"); err == nil || !strings.Contains(err.Error(), "bucket eng_state refused") {
		t.Errorf("delete eng_state/k: %v", err)
	}
	if err := h.KVPut(ctx, "happen_engine", "k", []byte("v")); err != nil {
		t.Errorf("put happen_engine/k when the engine's bucket is eng_state: %v", err)
	}
}

// WithBucketReplicas reaches the buckets KVPut creates.
func TestBucketReplicasInCluster(t *testing.T) {
	servers := testutil.RunCluster(t, 3)
	nc := testutil.Connect(t, servers[0].ClientURL())
	js := testutil.JetStream(t, nc)
	h := hostapi.New(nc, hostapi.WithBucketReplicas(3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The cluster elects its JetStream leaders first.
	testutil.CheckFor(t, 60*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return h.KVPut(cctx, "happen_modes", "partition", []byte("v"))
	})
	st, err := js.Stream(ctx, "KV_happen_modes")
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("bucket happen_modes has %d replicas, want 3", r)
	}
}
