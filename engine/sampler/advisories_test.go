package sampler_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

// fetchOne fetches one message, waiting up to maxWait; it returns nil when
// none came.
func fetchOne(t *testing.T, c jetstream.Consumer, maxWait time.Duration) jetstream.Msg {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(maxWait))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range batch.Messages() {
		got = m
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatal(err)
	}
	return got
}

type counts struct{ maxDeliveries, naks, terminated uint64 }

func countsOf(c flow.ConsumerSample) counts {
	return counts{c.MaxDeliveries, c.Naks, c.Terminated}
}

func TestAdvisoryCounters(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "JOBS", Storage: jetstream.MemoryStorage})
	e.publish("jobs.run", 1)
	naker := e.consumer("JOBS", jetstream.ConsumerConfig{Durable: "naker", AckPolicy: jetstream.AckExplicitPolicy})
	termer := e.consumer("JOBS", jetstream.ConsumerConfig{Durable: "termer", AckPolicy: jetstream.AckExplicitPolicy})
	maxer := e.consumer("JOBS", jetstream.ConsumerConfig{Durable: "maxer", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 2})
	e.consumer("JOBS", jetstream.ConsumerConfig{Durable: "quiet", AckPolicy: jetstream.AckExplicitPolicy})

	// naker: one nak, then the redelivery is acked.
	if err := fetchOne(t, naker, 5*time.Second).Nak(); err != nil {
		t.Fatal(err)
	}
	if err := fetchOne(t, naker, 5*time.Second).DoubleAck(e.ctx()); err != nil {
		t.Fatal(err)
	}
	// termer: one terminated message.
	if err := fetchOne(t, termer, 5*time.Second).Term(); err != nil {
		t.Fatal(err)
	}
	// maxer: two deliveries naked; the next pull finds the message over its
	// limit and the server reports it.
	for range 2 {
		if err := fetchOne(t, maxer, 5*time.Second).Nak(); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]counts{
		"naker":  {naks: 1},
		"termer": {terminated: 1},
		"maxer":  {maxDeliveries: 1, naks: 2},
		"quiet":  {},
	}
	testutil.CheckFor(t, 15*time.Second, func() error {
		if m := fetchOne(t, maxer, 50*time.Millisecond); m != nil {
			return fmt.Errorf("maxer got a delivery beyond MaxDeliver: %v", m.Subject())
		}
		snap := e.sample()
		for name, w := range want {
			c, ok := find(snap, "JOBS", name)
			if !ok {
				return fmt.Errorf("%s not sampled", name)
			}
			if got := countsOf(c); got != w {
				return fmt.Errorf("%s: %+v, want %+v", name, got, w)
			}
		}
		return nil
	})

	// Counters are cumulative: another sample shows them again.
	if c, _ := find(e.sample(), "JOBS", "naker"); c.Naks != 1 {
		t.Fatalf("naker naks %d on the next sample, want still 1", c.Naks)
	}

	// A node that left loses its counters: a new consumer of the same name
	// starts from zero.
	if err := e.js.DeleteConsumer(e.ctx(), "JOBS", "naker"); err != nil {
		t.Fatal(err)
	}
	if _, ok := find(e.sample(), "JOBS", "naker"); ok {
		t.Fatal("deleted naker still sampled")
	}
	e.consumer("JOBS", jetstream.ConsumerConfig{Durable: "naker", AckPolicy: jetstream.AckExplicitPolicy})
	if c, ok := find(e.sample(), "JOBS", "naker"); !ok || countsOf(c) != (counts{}) {
		t.Fatalf("recreated naker: %+v (found %v), want zero counters", c, ok)
	}
	if c, _ := find(e.sample(), "JOBS", "termer"); c.Terminated != 1 {
		t.Fatalf("termer lost its counter: %+v", c)
	}
}

// Advisories that are not what they claim are not counted.
func TestMalformedAdvisoriesIgnored(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "JOBS", Storage: jetstream.MemoryStorage})
	for _, name := range []string{"w", "other", "sentinel"} {
		e.consumer("JOBS", jetstream.ConsumerConfig{Durable: name})
	}

	pub := testutil.Connect(t, e.srv.ClientURL())
	const prefix = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED."
	for _, bad := range []string{
		`not json`,
		`{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"JOBS","consumer":"w"}`,
		`{"type":"io.nats.jetstream.advisory.v1.nak","stream":"JOBS","consumer":"other"}`,
		`{"type":"io.nats.jetstream.advisory.v1.nak","stream":"ELSE","consumer":"w"}`,
	} {
		if err := pub.Publish(prefix+"JOBS.w", []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	// One subscription delivers in order: once the sentinel is counted,
	// everything before it was handled.
	if err := pub.Publish(prefix+"JOBS.sentinel", []byte(`{"type":"io.nats.jetstream.advisory.v1.nak","stream":"JOBS","consumer":"sentinel"}`)); err != nil {
		t.Fatal(err)
	}
	var snap flow.Snapshot
	testutil.CheckFor(t, 10*time.Second, func() error {
		snap = e.sample()
		if c, _ := find(snap, "JOBS", "sentinel"); countsOf(c) != (counts{naks: 1}) {
			return fmt.Errorf("sentinel %+v, want one nak", countsOf(c))
		}
		return nil
	})
	for _, name := range []string{"w", "other"} {
		if c, _ := find(snap, "JOBS", name); countsOf(c) != (counts{}) {
			t.Errorf("%s counted a malformed advisory: %+v", name, countsOf(c))
		}
	}
}
