package sampler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRecordConsumerListings writes the CONSUMER.LIST replies under
// testdata/ that the decoding tests and benchmark read, from real servers:
// a 3-server cluster and a single server. It runs only when asked:
//
//	HAPPEN_RECORD_LISTINGS=1 go test -run RecordConsumerListings ./engine/sampler/
func TestRecordConsumerListings(t *testing.T) {
	if os.Getenv("HAPPEN_RECORD_LISTINGS") == "" {
		t.Skip("set HAPPEN_RECORD_LISTINGS=1 to record testdata/consumer_list_*.json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	servers := testutil.RunCluster(t, 3)
	nc := testutil.Connect(t, servers[0].ClientURL())
	js := testutil.JetStream(t, nc)
	testutil.CheckFor(t, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		return err
	})
	// The workload of cmd/bench-scale: durable pull consumers, each filtered
	// to a subject of its own, in 4 groups, some with work delivered and
	// acked, some with work waiting.
	const n = 256
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if _, err := js.CreateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
					Durable:       fmt.Sprintf("c%05d", i),
					AckPolicy:     jetstream.AckExplicitPolicy,
					FilterSubject: fmt.Sprintf("orders.%d", i),
					Metadata:      map[string]string{"happen.group": fmt.Sprintf("g%d", i%4)},
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range n {
		for range 1 + i%3 {
			if _, err := js.Publish(ctx, fmt.Sprintf("orders.%d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < n; i += 2 {
		c, err := js.Consumer(ctx, "ORDERS", fmt.Sprintf("c%05d", i))
		if err != nil {
			t.Fatal(err)
		}
		batch, err := c.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		first := true
		for m := range batch.Messages() {
			if first || i%4 == 0 {
				if err := m.DoubleAck(ctx); err != nil {
					t.Fatal(err)
				}
			}
			first = false
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return len(listReply(t, nc, "ORDERS", 0).Items) == n
	}, "all consumers listed")
	writeReply(t, nc, "ORDERS", 0, "consumer_list_cluster_256.json")

	// The odd shapes, clustered (R3 with leader and replicas) and on a
	// single server (no cluster block).
	varied(ctx, t, nc, js, "VARIED", 3)
	writeReply(t, nc, "VARIED", 0, "consumer_list_cluster_varied.json")

	single := testutil.RunServer(t)
	snc := testutil.Connect(t, single.ClientURL())
	varied(ctx, t, snc, testutil.JetStream(t, snc), "VARIED", 1)
	writeReply(t, snc, "VARIED", 0, "consumer_list_single_varied.json")
	writeReply(t, snc, "VARIED", 100, "consumer_list_single_past_end.json")
	writeReply(t, snc, "NOPE", 0, "consumer_list_error_not_found.json")
}

// varied creates a stream whose consumers are push, paused, filtered on
// several subjects, waiting on a pull, ignored, and carry metadata with
// odd values, escapes and keys the sampler does not read.
func varied(ctx context.Context, t *testing.T, nc *nats.Conn, js jetstream.JetStream, name string, replicas int) {
	t.Helper()
	testutil.CheckFor(t, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: name, Subjects: []string{"v.>"}, Replicas: replicas, Storage: jetstream.MemoryStorage})
		return err
	})
	for _, subj := range []string{"v.a", "v.b", "v.c", "v.a"} {
		if _, err := js.Publish(ctx, subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	pause := time.Now().Add(time.Hour).UTC()
	for _, cfg := range []jetstream.ConsumerConfig{
		{Durable: "push", DeliverSubject: "deliver.push", AckPolicy: jetstream.AckExplicitPolicy,
			Metadata: map[string]string{"happen.node": "push-1", "happen.group": "edge"}},
		{Durable: "paused", AckPolicy: jetstream.AckExplicitPolicy, PauseUntil: &pause},
		{Durable: "multi", AckPolicy: jetstream.AckAllPolicy, FilterSubjects: []string{"v.a", "v.b"}, AckWait: 7 * time.Second},
		{Durable: "none", AckPolicy: jetstream.AckNonePolicy, FilterSubject: "v.c", Description: "quotes \" and <tags> & \\ \u2028"},
		{Durable: "ignored", AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{"happen.ignore": "true"}},
		{Durable: "odd", AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{
			"happen.node": "has space", "happen.group": "g<1>&\"q\"\t", "other": "zürich ✓", "": "empty key"}},
		{Durable: "unicode", AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{"happen.node": "zürich-ü", "happen.group": "日本"}},
		{Durable: "waiting", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "v.none"},
	} {
		if _, err := js.CreateConsumer(ctx, name, cfg); err != nil {
			t.Fatalf("create %s: %v", cfg.Durable, err)
		}
	}
	// One delivered and unacked on the multi-filter consumer; a pull left
	// open on the one that has nothing to deliver.
	c, err := js.Consumer(ctx, name, "multi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+name+".waiting", inbox, []byte(`{"batch":1,"expires":120000000000}`)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, ci := range listReply(t, nc, name, 0).Items {
			if ci.Name == "waiting" {
				return ci.NumWaiting == 1
			}
		}
		return false
	}, "the open pull shows")
}

func listReply(t *testing.T, nc *nats.Conn, stream string, offset int) *consumerPage {
	t.Helper()
	var p consumerPage
	if err := decodeConsumerPageJSON(rawReply(t, nc, stream, offset), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func rawReply(t *testing.T, nc *nats.Conn, stream string, offset int) []byte {
	t.Helper()
	msg, err := nc.Request("$JS.API.CONSUMER.LIST."+stream, fmt.Appendf(nil, `{"offset":%d}`, offset), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msg.Data
}

func writeReply(t *testing.T, nc *nats.Conn, stream string, offset int, file string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join("testdata", file), rawReply(t, nc, stream, offset), 0o644); err != nil {
		t.Fatal(err)
	}
}
