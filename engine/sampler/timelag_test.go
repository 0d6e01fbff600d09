package sampler_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readCounter sees every message read the sampler sends: a plain
// subscription on the API subjects gets a copy of each request.
type readCounter struct {
	t                    testing.TB
	from                 *nats.Conn // the sampler's connection
	direct, msgs, marker *nats.Subscription
}

const readMarker = "test.reads.marker"

func countReads(t testing.TB, e *env) *readCounter {
	t.Helper()
	nc := testutil.Connect(t, e.srv.ClientURL())
	r := &readCounter{t: t, from: e.nc}
	var err error
	for sub, subj := range map[**nats.Subscription]string{&r.direct: "$JS.API.DIRECT.GET.>", &r.msgs: "$JS.API.STREAM.MSG.GET.>", &r.marker: readMarker} {
		if *sub, err = nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// take returns the direct gets and message API reads sent since the last
// take. A copy of a request may reach the counter after its answer
// reached the sampler, so take sends a marker on the sampler's own
// connection: the server passes on one connection's messages in order,
// so every read sent before it has arrived with it.
func (r *readCounter) take() (direct, msgs int) {
	r.t.Helper()
	if err := r.from.Publish(readMarker, nil); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.marker.NextMsg(10 * time.Second); err != nil {
		r.t.Fatalf("marker: %v", err)
	}
	drain := func(s *nats.Subscription) int {
		n := 0
		for {
			if _, err := s.NextMsg(0); err != nil {
				return n
			}
			n++
		}
	}
	return drain(r.direct), drain(r.msgs)
}

// publishedAt returns the server's publish time of each stored sequence.
func publishedAt(t testing.TB, st jetstream.Stream, seqs ...uint64) map[uint64]time.Time {
	t.Helper()
	out := map[uint64]time.Time{}
	for _, seq := range seqs {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out[seq] = m.Time
	}
	return out
}

func fetchAck(t testing.TB, c jetstream.Consumer, n int, ack func(i int) bool) {
	t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for m := range batch.Messages() {
		if ack(i) {
			if err := m.DoubleAck(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		i++
	}
	if err := batch.Error(); err != nil || i != n {
		t.Fatalf("fetched %d (%v), want %d", i, err, n)
	}
}

func sampleOf(t testing.TB, e *env, stream, consumer string) flow.ConsumerSample {
	t.Helper()
	c, ok := find(e.sample(), stream, consumer)
	if !ok {
		t.Fatalf("%s/%s not sampled", stream, consumer)
	}
	return c
}

func TestTimeLagReadsOldestUnfinished(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			e := newEnv(t, sampler.Config{})
			reads := countReads(t, e)
			st := e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, AllowDirect: direct})
			e.publish("orders.new", 6)
			times := publishedAt(t, st, 1, 2, 3, 4, 5, 6)
			c := e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
			e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "done", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy})
			reads.take() // the test's own reads of the times

			// want checks the sample and the reads it cost.
			want := func(what string, seq uint64, cost int) {
				t.Helper()
				s := sampleOf(t, e, "ORDERS", "w")
				if s.OldestSeq != seq || !s.OldestTime.Equal(times[seq]) {
					t.Errorf("%s: oldest unfinished %d at %v, want %d at %v", what, s.OldestSeq, s.OldestTime, seq, times[seq])
				}
				d, m := reads.take()
				if direct && (d != cost || m != 0) || !direct && (m != cost || d != 0) {
					t.Errorf("%s: %d direct gets and %d message API reads, want %d of the %s", what, d, m, cost,
						map[bool]string{true: "first", false: "second"}[direct])
				}
			}
			want("nothing consumed", 1, 1)
			want("floor unmoved: the read stands", 1, 0)
			fetchAck(t, c, 2, func(int) bool { return true })
			want("two acked", 3, 1)
			// 3 held, 4 acked: the floor stays below 3.
			fetchAck(t, c, 2, func(i int) bool { return i == 1 })
			want("acked out of order", 3, 0)

			if s := sampleOf(t, e, "ORDERS", "done"); s.OldestSeq != 0 || !s.OldestTime.IsZero() {
				t.Errorf("a node with nothing waiting was read: %d at %v", s.OldestSeq, s.OldestTime)
			}
			if d, m := reads.take(); d+m != 0 {
				t.Errorf("%d reads with the floor unmoved", d+m)
			}
		})
	}
}

func TestTimeLagFilteredConsumers(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	reads := countReads(t, e)
	st := e.stream(jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.MemoryStorage, AllowDirect: true})
	for _, subj := range []string{"orders.eu", "orders.eu", "orders.us", "orders.eu", "orders.ap", "orders.us"} {
		e.publish(subj, 1)
	}
	times := publishedAt(t, st, 1, 3)
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "us", FilterSubject: "orders.us", AckPolicy: jetstream.AckExplicitPolicy})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "apus", FilterSubjects: []string{"orders.us", "orders.ap"}, AckPolicy: jetstream.AckExplicitPolicy})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "all", FilterSubject: "orders.>", AckPolicy: jetstream.AckExplicitPolicy})
	reads.take()

	snap := e.sample()
	for _, tc := range []struct {
		name     string
		seq      uint64
		filtered bool
	}{
		{"us", 3, true},
		{"apus", 3, true},
		{"all", 1, false}, // its filter is the stream's only subject
	} {
		c, _ := find(snap, "ORDERS", tc.name)
		if c.OldestSeq != tc.seq || !c.OldestTime.Equal(times[tc.seq]) {
			t.Errorf("%s: oldest unfinished %d at %v, want %d", tc.name, c.OldestSeq, c.OldestTime, tc.seq)
		}
		if c.Filtered != tc.filtered {
			t.Errorf("%s: filtered %v, want %v", tc.name, c.Filtered, tc.filtered)
		}
	}
	// One read each, and one more for the second filter of apus.
	if d, _ := reads.take(); d != 4 {
		t.Errorf("%d direct gets, want 4", d)
	}
}

// The budget goes to the nodes furthest behind first; nodes not read are
// left to the tracker's estimate, and read on later ticks while the floors
// of those read stay.
func TestTimeLagBudget(t *testing.T) {
	e := newEnv(t, sampler.Config{TimeLagReads: 2})
	reads := countReads(t, e)
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, AllowDirect: true})
	for i := range 5 {
		e.publish("orders.new", 10)
		// Durables created one after the other with DeliverNew: c0 has
		// 50 waiting, c4 10, each further behind the lower its number.
		e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: fmt.Sprintf("c%d", i), AckPolicy: jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: uint64(i*10 + 1)})
	}
	readNow := func() []string {
		var out []string
		for _, c := range e.sample().Consumers {
			if !c.OldestTime.IsZero() {
				out = append(out, c.Key.Consumer)
			}
		}
		return out
	}
	for tick, want := range [][]string{{"c0", "c1"}, {"c0", "c1", "c2", "c3"}, {"c0", "c1", "c2", "c3", "c4"}, {"c0", "c1", "c2", "c3", "c4"}} {
		got := readNow()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tick %d: exact for %v, want %v", tick, got, want)
		}
		d, _ := reads.take()
		if wantReads := min(2, 5-2*tick); d != max(wantReads, 0) {
			t.Errorf("tick %d: %d reads, want %d", tick, d, max(wantReads, 0))
		}
	}
}

func TestTimeLagReadsDisabled(t *testing.T) {
	e := newEnv(t, sampler.Config{TimeLagReads: -1})
	reads := countReads(t, e)
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, AllowDirect: true})
	e.publish("orders.new", 3)
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if c := sampleOf(t, e, "ORDERS", "w"); c.OldestSeq != 0 {
		t.Errorf("read %d with reads disabled", c.OldestSeq)
	}
	if d, m := reads.take(); d+m != 0 {
		t.Errorf("%d reads with reads disabled", d+m)
	}
}

// Messages the stream's limits removed are stepped over: the oldest
// unfinished message is the stream's first, and a read whose message is
// gone no longer stands.
func TestTimeLagPastRemovedMessages(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	reads := countReads(t, e)
	st := e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, AllowDirect: true, MaxMsgs: 3})
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	e.publish("orders.new", 3)
	if c := sampleOf(t, e, "ORDERS", "w"); c.OldestSeq != 1 {
		t.Fatalf("oldest unfinished %d, want 1", c.OldestSeq)
	}
	reads.take()
	e.publish("orders.new", 2) // 1 and 2 removed, unread
	times := publishedAt(t, st, 3)
	reads.take()
	c := sampleOf(t, e, "ORDERS", "w")
	if c.OldestSeq != 3 || !c.OldestTime.Equal(times[3]) || c.AckFloorStream != 0 {
		t.Errorf("oldest unfinished %d at %v (ack floor %d), want 3 at %v", c.OldestSeq, c.OldestTime, c.AckFloorStream, times[3])
	}
	if d, _ := reads.take(); d != 1 {
		t.Errorf("%d reads after the read message was removed, want 1", d)
	}
}

func TestStreamLimitsSampled(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	st := e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, MaxMsgs: 5, MaxBytes: 1 << 20,
		MaxAge: time.Hour, MaxMsgsPerSubject: 10})
	e.stream(jetstream.StreamConfig{Name: "NEW", Storage: jetstream.MemoryStorage, MaxMsgs: 5, Discard: jetstream.DiscardNew})
	e.publish("orders.new", 7)
	times := publishedAt(t, st, 3, 7)
	e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	e.consumer("NEW", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	testutil.CheckFor(t, 5*time.Second, func() error {
		snap := e.sample()
		s, _ := findStream(snap, "ORDERS")
		if s.FirstSeq != 3 || s.LastSeq != 7 || s.Msgs != 5 || s.Bytes == 0 || !s.FirstTime.Equal(times[3]) || !s.LastTime.Equal(times[7]) {
			return fmt.Errorf("state %+v, want messages 3..7 with their times", s)
		}
		if s.MaxMsgs != 5 || s.MaxBytes != 1<<20 || s.MaxAge != time.Hour || s.MaxMsgsPerSubject != 10 || s.DiscardNew {
			return fmt.Errorf("limits %+v", s)
		}
		if n, _ := findStream(snap, "NEW"); !n.DiscardNew || n.MaxMsgs != 5 || n.MaxBytes > 0 || n.MaxAge != 0 {
			return fmt.Errorf("discard-new stream %+v", n)
		}
		return nil
	})
}

// A read that fails leaves the node to the estimate, is warned about once,
// and the next tick reads again.
func TestTimeLagReadFailureIsEstimated(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	e := newEnv(t, sampler.Config{APIPrefix: "$RELAY.API", Timeout: 500 * time.Millisecond})
	relay(t, e.srv.ClientURL(), "$RELAY.API", func(rest string) bool {
		return fail.Load() && strings.HasPrefix(rest, ".DIRECT.GET.")
	})
	e.stream(jetstream.StreamConfig{Name: "ORDERS", Storage: jetstream.MemoryStorage, AllowDirect: true})
	e.publish("orders.new", 3)
	// 40 waiting nodes: five rounds of the sampler's 8 reads at a time.
	for i := range 40 {
		e.consumer("ORDERS", jetstream.ConsumerConfig{Durable: fmt.Sprintf("w%02d", i), AckPolicy: jetstream.AckExplicitPolicy})
	}

	// The relay swallows direct gets: the reads time out together, within
	// one request timeout, and the sample still comes back, unread.
	for range 2 {
		start := time.Now()
		if c := sampleOf(t, e, "ORDERS", "w00"); c.OldestSeq != 0 || c.NumPending != 3 {
			t.Fatalf("oldest %d, pending %d: want no read and the consumer sampled", c.OldestSeq, c.NumPending)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("a sample whose reads go unanswered took %v: the reads must time out together (500ms)", d)
		}
	}
	warned := 0
	for _, r := range e.logs.Records(t, slog.LevelWarn) {
		if r["msg"] == "cannot read oldest messages; time lags are estimated" {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("warned %d times about failing reads, want once", warned)
	}
	fail.Store(false)
	if c := sampleOf(t, e, "ORDERS", "w00"); c.OldestSeq != 1 || c.OldestTime.IsZero() {
		t.Errorf("oldest %d at %v once reads answer again, want 1", c.OldestSeq, c.OldestTime)
	}
}
