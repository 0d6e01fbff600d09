package sampler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestDiscoversStreamsAndConsumers(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})
	e.publish("orders.new", 3)

	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "worker-a", AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{"happen.node": "orders-eu-1", "happen.group": "eu"}})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "worker-b", AckPolicy: jetstream.AckExplicitPolicy})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "pusher", DeliverSubject: "deliver.pusher",
		AckPolicy: jetstream.AckExplicitPolicy, Metadata: map[string]string{"happen.group": "us"}})
	ephPull := e.consumer("ORDERS", jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: time.Hour})
	ephPullName := ephPull.CachedInfo().Name

	// A bound push consumer: someone listens on its deliver subject.
	listener := testutil.Connect(t, e.srv.ClientURL())
	if _, err := listener.SubscribeSync("deliver.pusher"); err != nil {
		t.Fatal(err)
	}
	// An ephemeral push consumer named by the server, the classic way.
	legacy, err := listener.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	ephSub, err := legacy.SubscribeSync("orders.>", nats.AckExplicit())
	if err != nil {
		t.Fatal(err)
	}
	ephInfo, err := ephSub.ConsumerInfo()
	if err != nil {
		t.Fatal(err)
	}
	ephPushName := ephInfo.Name

	var snap flow.Snapshot
	testutil.CheckFor(t, 10*time.Second, func() error {
		snap = e.sample()
		if c, _ := find(snap, "ORDERS", "pusher"); !c.PushBound {
			return errors.New("pusher not yet bound")
		}
		return nil
	})

	if len(snap.Consumers) != 5 {
		t.Fatalf("consumers = %v, want 5", keys(snap))
	}
	want := []struct {
		name, node, group string
		push, bound       bool
	}{
		{"worker-a", "orders-eu-1", "eu", false, false},
		{"worker-b", "worker-b", "", false, false},
		{"pusher", "pusher", "us", true, true},
		{ephPullName, ephPullName, "", false, false},
		{ephPushName, ephPushName, "", true, true},
	}
	for _, w := range want {
		c, ok := find(snap, "ORDERS", w.name)
		if !ok {
			t.Errorf("consumer %s not sampled; got %v", w.name, keys(snap))
			continue
		}
		if c.NodeID != w.node || c.Group != w.group {
			t.Errorf("%s: node/group = %q/%q, want %q/%q", w.name, c.NodeID, c.Group, w.node, w.group)
		}
		if c.Push != w.push || c.PushBound != w.bound {
			t.Errorf("%s: push/bound = %v/%v, want %v/%v", w.name, c.Push, c.PushBound, w.push, w.bound)
		}
		if c.Created.IsZero() || c.At.IsZero() || c.At.Before(c.Created) {
			t.Errorf("%s: created %v, at %v", w.name, c.Created, c.At)
		}
		if c.Paused {
			t.Errorf("%s: paused", w.name)
		}
		if c.Leader != "" {
			t.Errorf("%s: leader %q on a single server, want none", w.name, c.Leader)
		}
	}
	// The push consumers delivered what was there; the pull ones wait.
	if c, _ := find(snap, "ORDERS", "worker-a"); c.NumPending != 3 || c.Delivered != 0 {
		t.Errorf("worker-a: pending %d delivered %d, want 3 and 0", c.NumPending, c.Delivered)
	}

	st, ok := findStream(snap, "ORDERS")
	if !ok || len(snap.Streams) != 1 {
		t.Fatalf("streams = %+v, want ORDERS only", snap.Streams)
	}
	if st.Msgs != 3 || st.LastSeq != 3 || st.At.IsZero() {
		t.Errorf("ORDERS sample = %+v, want 3 messages up to seq 3", st)
	}
	if len(snap.Unobserved) != 0 || len(snap.UnobservedStreams) != 0 {
		t.Errorf("unobserved %v / streams %v, want none", snap.Unobserved, snap.UnobservedStreams)
	}
	if snap.At.IsZero() || time.Since(snap.At) > time.Minute {
		t.Errorf("snapshot at %v", snap.At)
	}
}

func TestPausedConsumer(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if _, err := e.js.PauseConsumer(e.ctx(), "ORDERS", "w", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if c, ok := find(e.sample(), "ORDERS", "w"); !ok || !c.Paused {
		t.Fatalf("w = %+v (found %v), want paused", c, ok)
	}
}

func TestOddMetadataFallsBackAndWarnsOnce(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})

	odd := []struct{ name, value, reason string }{
		{"empty", "", "empty"},
		{"blank", "  \t ", "empty"},
		{"long", strings.Repeat("n", 129), "longer than 128 bytes"},
		{"space", "orders eu", "contains whitespace"},
		{"tab", "orders\teu", "contains whitespace"},
		{"control", "orders\x01eu", "contains a control character"},
		{"dot", "orders.eu", "contains '.'"},
		{"star", "orders*", "contains '*'"},
		{"gt", "orders>", "contains '>'"},
	}
	for _, o := range odd {
		e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "node-" + o.name,
			Metadata: map[string]string{"happen.node": o.value, "happen.group": "eu"}})
		e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "group-" + o.name,
			Metadata: map[string]string{"happen.node": "n-" + o.name, "happen.group": o.value}})
	}
	// The longest accepted value.
	longest := strings.Repeat("n", 128)
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "longest", Metadata: map[string]string{"happen.node": longest}})

	for range 3 {
		snap := e.sample()
		for _, o := range odd {
			if c, ok := find(snap, "ORDERS", "node-"+o.name); !ok || c.NodeID != "node-"+o.name || c.Group != "eu" {
				t.Errorf("node %q: got %+v (found %v), want node id = consumer name, group eu", o.value, c, ok)
			}
			if c, ok := find(snap, "ORDERS", "group-"+o.name); !ok || c.NodeID != "n-"+o.name || c.Group != "" {
				t.Errorf("group %q: got %+v (found %v), want its node id and no group", o.value, c, ok)
			}
		}
		if c, _ := find(snap, "ORDERS", "longest"); c.NodeID != longest {
			t.Errorf("128-byte node id refused: %q", c.NodeID)
		}
	}

	warns := e.logs.Records(t, slog.LevelWarn)
	if len(warns) != 2*len(odd) {
		t.Errorf("%d warnings over three samples, want %d (one per consumer): %v", len(warns), 2*len(odd), warns)
	}
	got := map[string]map[string]any{}
	for _, w := range warns {
		got[fmt.Sprint(w["consumer"])] = w
	}
	for _, o := range odd {
		for _, c := range []struct{ consumer, key string }{{"node-" + o.name, "happen.node"}, {"group-" + o.name, "happen.group"}} {
			w, ok := got[c.consumer]
			if !ok {
				t.Errorf("no warning for %s", c.consumer)
				continue
			}
			if w["stream"] != "ORDERS" || w["key"] != c.key || w["value"] != o.value || w["reason"] != o.reason {
				t.Errorf("warning for %s = %v, want stream ORDERS, key %s, value %q, reason %q", c.consumer, w, c.key, o.value, o.reason)
			}
		}
	}

	// Another odd value on the same consumer is a new warning, once.
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "node-dot",
		Metadata: map[string]string{"happen.node": "orders.us", "happen.group": "eu"}})
	e.sample()
	e.sample()
	warns = e.logs.Records(t, slog.LevelWarn)
	if len(warns) != 2*len(odd)+1 || warns[len(warns)-1]["value"] != "orders.us" {
		t.Errorf("after changing node-dot to another odd value: %d warnings, last %v; want one more for orders.us", len(warns), warns[len(warns)-1])
	}
}

func TestPaginationManyConsumers(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "WIDE", Storage: jetstream.MemoryStorage})
	const n = 300 // more than the 256 the server puts on one page
	createConcurrently(t, n, func(i int) error {
		_, err := e.js.CreateOrUpdateConsumer(e.ctx(), "WIDE", jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("c%03d", i), Metadata: map[string]string{"happen.node": fmt.Sprintf("node-%03d", i)}})
		return err
	})
	snap := e.sample()
	if len(snap.Consumers) != n {
		t.Fatalf("%d consumers sampled, want %d", len(snap.Consumers), n)
	}
	seen := map[string]bool{}
	for _, c := range snap.Consumers {
		if seen[c.Key.Consumer] {
			t.Errorf("%s sampled twice", c.Key)
		}
		seen[c.Key.Consumer] = true
		if want := "node-" + strings.TrimPrefix(c.Key.Consumer, "c"); c.NodeID != want {
			t.Errorf("%s: node %q, want %q", c.Key, c.NodeID, want)
		}
	}
}

func TestPaginationManyStreams(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	const n = 300
	createConcurrently(t, n, func(i int) error {
		name := fmt.Sprintf("S%03d", i)
		if _, err := e.js.CreateStream(e.ctx(), jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name)},
			Storage: jetstream.MemoryStorage, MaxBytes: 1 << 16}); err != nil {
			return err
		}
		if i%50 == 0 {
			_, err := e.js.CreateOrUpdateConsumer(e.ctx(), name, jetstream.ConsumerConfig{Durable: "w"})
			return err
		}
		return nil
	})
	snap := e.sample()
	if len(snap.Streams) != n {
		t.Fatalf("%d streams sampled, want %d", len(snap.Streams), n)
	}
	if !slices.IsSortedFunc(snap.Streams, func(a, b flow.StreamSample) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("streams not sorted by name")
	}
	for i := range n {
		if name := fmt.Sprintf("S%03d", i); snap.Streams[i].Name != name {
			t.Fatalf("stream %d is %s, want %s", i, snap.Streams[i].Name, name)
		}
	}
	if len(snap.Consumers) != n/50 {
		t.Errorf("consumers %v, want one on every 50th stream", keys(snap))
	}
	for i := 0; i < n; i += 50 {
		if _, ok := find(snap, fmt.Sprintf("S%03d", i), "w"); !ok {
			t.Errorf("consumer on S%03d missing", i)
		}
	}
}

// createConcurrently runs create for 0..n-1 on a few goroutines.
func createConcurrently(t *testing.T, n int, create func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := create(i); err != nil {
					errs <- fmt.Errorf("create %d: %w", i, err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNumbers(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})
	e.publish("orders.new", 10)
	cons := e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})

	before := e.sample()
	if c, _ := find(before, "ORDERS", "w"); c.NumPending != 10 || !c.LastAck.IsZero() || !c.LastDelivery.IsZero() {
		t.Fatalf("before consuming: %+v", c)
	}

	batch, err := cons.Fetch(6, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil || len(msgs) != 6 {
		t.Fatalf("fetched %d (%v), want 6", len(msgs), err)
	}
	for _, m := range msgs[:4] {
		if err := m.DoubleAck(e.ctx()); err != nil {
			t.Fatal(err)
		}
	}

	testutil.CheckFor(t, 10*time.Second, func() error {
		snap := e.sample()
		c, ok := find(snap, "ORDERS", "w")
		if !ok {
			return errors.New("w not sampled")
		}
		got := [...]uint64{c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, c.Delivered, c.DeliveredStream, c.AckFloor, c.AckFloorStream}
		if want := [...]uint64{4, 2, 0, 0, 6, 6, 4, 4}; got != want {
			return fmt.Errorf("pending, ackPending, redelivered, waiting, delivered, deliveredStream, ackFloor, ackFloorStream = %v, want %v", got, want)
		}
		if c.LastDelivery.IsZero() || c.LastAck.IsZero() {
			return fmt.Errorf("last delivery %v, last ack %v: want both set", c.LastDelivery, c.LastAck)
		}
		if c.LastAck.After(c.At) || c.LastDelivery.After(c.At) {
			return fmt.Errorf("last delivery %v / ack %v after the sample time %v", c.LastDelivery, c.LastAck, c.At)
		}
		if st, _ := findStream(snap, "ORDERS"); st.Msgs != 10 || st.LastSeq != 10 {
			return fmt.Errorf("stream %+v, want 10 messages up to seq 10", st)
		}
		return nil
	})
}

func TestDeletionsAndNewStreams(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "A", Storage: jetstream.MemoryStorage})
	e.stream(jetstream.StreamConfig{Name: "B", Storage: jetstream.MemoryStorage})
	e.consumer("A", jetstream.ConsumerConfig{Durable: "a1"})
	e.consumer("A", jetstream.ConsumerConfig{Durable: "a2"})
	e.consumer("B", jetstream.ConsumerConfig{Durable: "b1"})

	if got := keys(e.sample()); !slices.Equal(got, []string{"A/a1", "A/a2", "B/b1"}) {
		t.Fatalf("consumers %v", got)
	}

	if err := e.js.DeleteConsumer(e.ctx(), "A", "a2"); err != nil {
		t.Fatal(err)
	}
	if got := keys(e.sample()); !slices.Equal(got, []string{"A/a1", "B/b1"}) {
		t.Fatalf("after deleting A/a2: %v", got)
	}

	if err := e.js.DeleteStream(e.ctx(), "B"); err != nil {
		t.Fatal(err)
	}
	snap := e.sample()
	if got := keys(snap); !slices.Equal(got, []string{"A/a1"}) {
		t.Fatalf("after deleting stream B: %v", got)
	}
	if _, ok := findStream(snap, "B"); ok || len(snap.UnobservedStreams) != 0 {
		t.Fatalf("deleted stream B still sampled: streams %+v, unobserved %v", snap.Streams, snap.UnobservedStreams)
	}

	e.stream(jetstream.StreamConfig{Name: "C", Storage: jetstream.MemoryStorage})
	e.consumer("C", jetstream.ConsumerConfig{Durable: "c1"})
	snap = e.sample()
	if got := keys(snap); !slices.Equal(got, []string{"A/a1", "C/c1"}) {
		t.Fatalf("after creating stream C: %v", got)
	}
	if _, ok := findStream(snap, "C"); !ok {
		t.Fatalf("stream C not sampled: %+v", snap.Streams)
	}
}

// A stream deleted between the stream list and its consumer list: its
// consumers left, they are not unobserved.
func TestStreamDeletedMidSample(t *testing.T) {
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.RELAY.API"})
	e.stream(jetstream.StreamConfig{Name: "DOOMED", Storage: jetstream.MemoryStorage})
	e.stream(jetstream.StreamConfig{Name: "KEEP", Storage: jetstream.MemoryStorage})
	e.consumer("DOOMED", jetstream.ConsumerConfig{Durable: "d"})
	e.consumer("KEEP", jetstream.ConsumerConfig{Durable: "k"})
	var doomed sync.Once
	relay(t, e.srv.ClientURL(), "$JS.RELAY.API", func(rest string) bool {
		if rest == ".CONSUMER.LIST.DOOMED" {
			doomed.Do(func() {
				if err := e.js.DeleteStream(context.Background(), "DOOMED"); err != nil {
					t.Errorf("delete DOOMED: %v", err)
				}
			})
		}
		return false
	})
	snap := e.sample()
	if got := keys(snap); !slices.Equal(got, []string{"KEEP/k"}) {
		t.Errorf("consumers %v, want KEEP/k only", got)
	}
	if len(snap.UnobservedStreams) != 0 || len(snap.Unobserved) != 0 {
		t.Errorf("unobserved %v / streams %v, want none", snap.Unobserved, snap.UnobservedStreams)
	}
	if _, ok := findStream(snap, "DOOMED"); ok {
		t.Errorf("deleted stream still sampled: %+v", snap.Streams)
	}
}

// One stream whose consumer list never answers is unobserved for the tick;
// the others are sampled, and the request timeout, not the tick's far longer
// deadline, bounds the tick.
func TestUnresponsiveStreamIsUnobserved(t *testing.T) {
	// Every answered request, relayed twice over, must fit in the timeout
	// even on a loaded machine under the race detector.
	const timeout = 2 * time.Second
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.RELAY.API", Timeout: timeout, Concurrency: 2})
	for _, name := range []string{"A", "SLOW", "Z"} {
		e.stream(jetstream.StreamConfig{Name: name, Storage: jetstream.MemoryStorage})
		e.consumer(name, jetstream.ConsumerConfig{Durable: "w"})
	}
	relay(t, e.srv.ClientURL(), "$JS.RELAY.API", func(rest string) bool { return rest == ".CONSUMER.LIST.SLOW" })

	const deadline = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	began := time.Now()
	snap, err := e.s.Sample(ctx)
	if err != nil {
		t.Fatalf("sample: %v", err)
	}
	if took := time.Since(began); took >= deadline/2 {
		t.Errorf("sample took %v: the %v request timeout did not bound the unanswered stream", took, timeout)
	}
	if got := keys(snap); !slices.Equal(got, []string{"A/w", "Z/w"}) {
		t.Errorf("consumers %v, want A/w and Z/w", got)
	}
	if !slices.Equal(snap.UnobservedStreams, []string{"SLOW"}) {
		t.Errorf("unobserved streams %v, want [SLOW]", snap.UnobservedStreams)
	}
	if _, ok := findStream(snap, "SLOW"); !ok {
		t.Errorf("SLOW's own state was read and belongs in the snapshot: %+v", snap.Streams)
	}
	e.sample()
	if n := len(e.logs.Records(t, slog.LevelWarn)); n != 1 {
		t.Errorf("%d warnings over two ticks, want one when SLOW became unreadable", n)
	}
}

// The tick's deadline bounds a sample even when the request timeout is
// longer; cancelling the tick is an error.
func TestSampleRespectsContext(t *testing.T) {
	const timeout = time.Minute
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.RELAY.API", Timeout: timeout})
	for _, name := range []string{"A", "SLOW"} {
		e.stream(jetstream.StreamConfig{Name: name, Storage: jetstream.MemoryStorage})
		e.consumer(name, jetstream.ConsumerConfig{Durable: "w"})
	}
	relay(t, e.srv.ClientURL(), "$JS.RELAY.API", func(rest string) bool { return rest == ".CONSUMER.LIST.SLOW" })

	// Long enough for the stream list and A's consumers, relayed, on a
	// loaded machine under the race detector; far shorter than the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	snap, err := e.s.Sample(ctx)
	if err != nil {
		t.Fatalf("sample past its deadline: %v, want the streams read so far", err)
	}
	if took := time.Since(began); took >= timeout/2 {
		t.Errorf("sample took %v: the deadline did not bound the unanswered stream", took)
	}
	if got := keys(snap); !slices.Equal(got, []string{"A/w"}) || !slices.Equal(snap.UnobservedStreams, []string{"SLOW"}) {
		t.Errorf("consumers %v, unobserved streams %v; want A/w and [SLOW]", got, snap.UnobservedStreams)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := e.s.Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sample: %v, want context.Canceled", err)
	}
}

func TestStreamListUnanswered(t *testing.T) {
	const timeout = 200 * time.Millisecond
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.RELAY.API", Timeout: timeout})
	relay(t, e.srv.ClientURL(), "$JS.RELAY.API", func(string) bool { return true })
	_, err := e.s.Sample(e.ctx())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sample with an unanswered stream list: %v, want a deadline error", err)
	}
}

func TestNoJetStreamIsAnError(t *testing.T) {
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.NOWHERE.API"})
	_, err := e.s.Sample(e.ctx())
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("sample without a JetStream API: %v, want no responders", err)
	}
}

func TestAPIErrorIsAnError(t *testing.T) {
	e := newEnv(t, sampler.Config{APIPrefix: "$JS.RELAY.API"})
	nc := testutil.Connect(t, e.srv.ClientURL())
	// A JetStream API that refuses the request, as a server does when the
	// account has no JetStream.
	if _, err := nc.Subscribe("$JS.RELAY.API.STREAM.LIST", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"type":"io.nats.jetstream.api.v1.stream_list_response","error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.Sample(e.ctx())
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10039 {
		t.Fatalf("sample: %v, want the API error 10039", err)
	}
}

func TestServerDownAndBack(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := newEnv(t, sampler.Config{Timeout: timeout},
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.FileStorage})
	e.publish("orders.new", 2)
	cons := e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if _, ok := find(e.sample(), "ORDERS", "w"); !ok {
		t.Fatal("w not sampled")
	}

	// Down now, back later on the same address and store.
	restart := e.opts.Clone()
	restart.Port = e.srv.Addr().(*net.TCPAddr).Port
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	done := make(chan error, 1)
	go func() {
		_, err := e.s.Sample(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("sample succeeded with the server down")
		}
	case <-time.After(20 * timeout): // far beyond one request timeout: a hang, not slowness
		t.Fatal("sample did not return with the server down")
	}

	testutil.StartServer(t, restart)
	testutil.CheckFor(t, 20*time.Second, func() error {
		snap, err := e.s.Sample(e.ctx())
		if err != nil {
			return err
		}
		if c, ok := find(snap, "ORDERS", "w"); !ok || c.NumPending != 2 {
			return fmt.Errorf("w = %+v (found %v), want 2 pending", c, ok)
		}
		return nil
	})

	// Advisory subscriptions came back with the connection.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if c, _ := find(e.sample(), "ORDERS", "w"); c.Naks != 1 {
			return fmt.Errorf("naks = %d, want 1", c.Naks)
		}
		return nil
	})
}

func TestInternalStreamsAndIgnore(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "app"})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "tool", Metadata: map[string]string{"happen.ignore": "true"}})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "not-ignored", Metadata: map[string]string{"happen.ignore": "false"}})

	kv, err := e.js.CreateKeyValue(e.ctx(), jetstream.KeyValueConfig{Bucket: "cfg", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(e.ctx(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// An application node that reads a bucket's stream says so.
	e.consumer("KV_cfg", jetstream.ConsumerConfig{Durable: "cfg-reader", Metadata: map[string]string{"happen.node": "cfg-reader"}})

	other, err := e.js.CreateKeyValue(e.ctx(), jetstream.KeyValueConfig{Bucket: "other", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	ow, err := other.WatchAll(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	defer ow.Stop()
	obj, err := e.js.CreateObjectStore(e.ctx(), jetstream.ObjectStoreConfig{Bucket: "files", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := obj.Watch(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Stop()

	// Make sure the watchers' consumers exist before sampling.
	for _, stream := range []string{"KV_cfg", "KV_other", "OBJ_files"} {
		testutil.CheckFor(t, 10*time.Second, func() error {
			info, err := e.js.Stream(e.ctx(), stream)
			if err != nil {
				return err
			}
			si, err := info.Info(e.ctx())
			if err != nil {
				return err
			}
			if si.State.Consumers == 0 {
				return fmt.Errorf("%s has no consumer yet", stream)
			}
			return nil
		})
	}

	snap := e.sample()
	if got := keys(snap); !slices.Equal(got, []string{"KV_cfg/cfg-reader", "ORDERS/app", "ORDERS/not-ignored"}) {
		t.Errorf("consumers %v, want the application's only", got)
	}
	var streams []string
	for _, s := range snap.Streams {
		streams = append(streams, s.Name)
	}
	if !slices.Equal(streams, []string{"KV_cfg", "ORDERS"}) {
		t.Errorf("streams %v, want KV_cfg (it has a node) and ORDERS", streams)
	}
}

// Start and Stop own the advisory subscriptions.
func TestStartStop(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	s := sampler.New(nc, sampler.Config{})
	s.Stop() // before Start: nothing to do
	base := nc.NumSubscriptions()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	if got := nc.NumSubscriptions(); got != base+3 {
		t.Errorf("%d subscriptions after Start, want %d", got, base+3)
	}
	s.Stop()
	s.Stop()
	if got := nc.NumSubscriptions(); got != base {
		t.Errorf("%d subscriptions after Stop, want %d", got, base)
	}

	// Ending the context ends the subscriptions too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	if err := s.Start(ctx2); err != nil {
		t.Fatal(err)
	}
	cancel2()
	testutil.Eventually(t, 5*time.Second, func() bool { return nc.NumSubscriptions() == base }, "subscriptions left after ctx ended")
	// and the sampler can start again.
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start after the context ended: %v", err)
	}
	if got := nc.NumSubscriptions(); got != base+3 {
		t.Errorf("%d subscriptions after restarting, want %d", got, base+3)
	}
	s.Stop()
}

// A consumer whose messages are taken and never acked is redelivered to
// after AckWait: against a real server, the sampled flow shows no acks and
// a stall, not a node making progress.
func TestRedeliveredNeverAckedStalls(t *testing.T) {
	for _, ackFirst := range []int{0, 2} {
		t.Run(fmt.Sprintf("acked=%d", ackFirst), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sampler.Config{})
			e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage})
			e.publish("orders.new", 5)
			cons := e.consumer("ORDERS", jetstream.ConsumerConfig{
				Durable: "hung", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 300 * time.Millisecond,
			})
			if ackFirst > 0 {
				batch, err := cons.Fetch(ackFirst, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				for m := range batch.Messages() {
					if err := m.DoubleAck(e.ctx()); err != nil {
						t.Fatal(err)
					}
				}
			}
			tr := flow.NewTracker(flow.Config{StallAfter: time.Second, WarmUp: time.Second})
			var last flow.Node
			redelivered := false
			testutil.Eventually(t, 20*time.Second, func() bool {
				if b, err := cons.FetchNoWait(5); err == nil {
					for m := range b.Messages() {
						if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
							redelivered = true
						}
					}
				}
				for _, n := range tr.Update(e.sample()).Nodes {
					last = n
				}
				return redelivered && last.Stalled && last.AckRate == 0
			}, "a consumer redelivered to and never acking stalls with ackRate 0")
		})
	}
}

// A stream the stream list says has no consumers costs no CONSUMER.LIST
// request, unless it had consumers last tick: a count that lags behind a
// deletion must not make a node vanish early, nor hide a new one.
func TestStreamsWithoutConsumersAreNotListed(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	for _, name := range []string{"ORDERS", "ARCHIVE", "SPARE"} {
		e.stream(jetstream.StreamConfig{Name: name, Storage: jetstream.MemoryStorage})
	}
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})

	spy := testutil.Connect(t, e.srv.ClientURL())
	sub, err := spy.SubscribeSync("$JS.API.CONSUMER.LIST.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]int {
		// After a round trip on its connection, every request the server
		// routed before it is queued on the spy.
		if err := spy.Flush(); err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for {
			m, err := sub.NextMsg(20 * time.Millisecond)
			if err != nil {
				return out
			}
			out[strings.TrimPrefix(m.Subject, "$JS.API.CONSUMER.LIST.")]++
		}
	}

	e.sample()
	e.sample()
	if got := counts(); got["ORDERS"] != 2 || got["ARCHIVE"] != 0 || got["SPARE"] != 0 {
		t.Fatalf("CONSUMER.LIST requests over two ticks: %v, want only ORDERS, twice", got)
	}
	e.consumer("SPARE", jetstream.ConsumerConfig{Durable: "late", AckPolicy: jetstream.AckExplicitPolicy})
	if _, ok := find(e.sample(), "SPARE", "late"); !ok {
		t.Fatal("a consumer on a stream that had none is not seen on the next tick")
	}
	counts()
	if err := e.js.DeleteConsumer(e.ctx(), "SPARE", "late"); err != nil {
		t.Fatal(err)
	}
	if _, ok := find(e.sample(), "SPARE", "late"); ok {
		t.Fatal("deleted consumer still sampled")
	}
	e.sample()
	if got := counts(); got["SPARE"] != 1 {
		t.Fatalf("SPARE listed %d times over the two ticks after its last consumer went, want once (the tick that saw it go)", got["SPARE"])
	}
}
