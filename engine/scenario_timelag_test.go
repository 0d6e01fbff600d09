package engine_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	ptestutil "github.com/prometheus/client_golang/prometheus/testutil"
)

// Time lag, time to drain and data loss against a real server: the engine
// reads how old a node's oldest unfinished message is, warns before a
// stream's limits remove what a node has not been delivered, and reports
// it when they do; streams that remove only what was acked raise nothing.

// startEngineWith is startEngine with the engine's Prometheus series in
// reg.
func (w *world) startEngineWith(reg *prometheus.Registry) {
	w.t.Helper()
	w.startEngineConfig(nil, engine.Config{Registry: reg})
}

func (w *world) createStream(cfg jetstream.StreamConfig) jetstream.Stream {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.js.CreateStream(ctx, cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) createConsumer(stream string, cfg jetstream.ConsumerConfig) jetstream.Consumer {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := w.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// publishedAt is the server's publish time of message seq.
func publishedAt(t testing.TB, st jetstream.Stream, seq uint64) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	return m.Time
}

// A consumer nobody works is kept behind while messages with known publish
// times pile up: its time lag is the age of its oldest unfinished message,
// within one interval of the truth, read from the stream (message API or
// direct get); acking the first messages moves it to the next one.
func TestScenarioTimeLagOfAConsumerKeptBehind(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	direct := w.createStream(jetstream.StreamConfig{Name: "DIRECT", Subjects: []string{"direct.>"}, AllowDirect: true})
	orders, err := w.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	// Two nodes nobody works, in groups of their own, and one that keeps
	// up, so the two are node failures, not an outage.
	behind := map[string]jetstream.Consumer{
		stream:   w.createConsumer(stream, nodeConfig("behind", "eu")),
		"DIRECT": w.createConsumer("DIRECT", nodeConfig("behind-direct", "ap")),
	}
	streams := map[string]jetstream.Stream{stream: orders, "DIRECT": direct}
	w.track("behind", nil)
	w.track("behind-direct", nil)
	w.addNode("flowing", "us")
	w.publish(10)
	testutil.StartPublisher(t, w.url, "direct", 10)
	w.startEngine(nil)

	// check compares each node's time lag at the last tick with the age
	// then of the message just past its ack floor (firstUnacked).
	check := func(what string, firstUnacked uint64) {
		t.Helper()
		for name, id := range map[string]string{stream: "behind", "DIRECT": "behind-direct"} {
			want := publishedAt(t, streams[name], firstUnacked)
			testutil.CheckFor(t, 5*time.Second, func() error {
				st := w.eng.Status()
				for _, n := range st.Nodes {
					if n.ID != id {
						continue
					}
					truth := st.At.Sub(want).Seconds()
					if n.TimeLagEstimated || math.Abs(n.TimeLagSeconds-truth) > 1 {
						return fmt.Errorf("%s, %s: time lag %.2fs (estimated %v), want %.2fs within one interval", what, id, n.TimeLagSeconds, n.TimeLagEstimated, truth)
					}
					if n.SecondsToDrain != -1 {
						return fmt.Errorf("%s, %s: secondsToDrain %v while nothing is consumed, want -1", what, id, n.SecondsToDrain)
					}
					return nil
				}
				return fmt.Errorf("%s: node %s not in the status", what, id)
			})
		}
	}
	w.ticks(3)
	check("nothing acked", 1)
	w.ticks(3)
	check("three ticks on, nothing acked", 1)

	// Ack the first 25: the oldest unfinished message is the 26th.
	for _, c := range behind {
		batch, err := c.Fetch(25, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			if err := m.DoubleAck(t.Context()); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 25 {
			t.Fatalf("fetched %d, want 25", n)
		}
	}
	w.ticks(2)
	check("25 acked", 26)

	// A node.down for a consumer nobody works carries its time lag.
	downs := w.waitEvents(events.TypeNodeDown, 2, 30*time.Second)
	for _, d := range nodeDowns(t, downs) {
		if d.Pattern != "node-failure" || d.NodeID == "flowing" {
			t.Errorf("node.down %+v, want node failures of the nodes nobody works", d)
		}
		if lm := d.LagMetrics; lm.TimeLagSeconds <= 0 || lm.TimeLagEstimated || lm.SecondsToDrain != -1 || lm.SecondsToLoss != -1 {
			t.Errorf("node.down of %s: lagMetrics %+v, want a read time lag, no drain, no loss in sight", d.NodeID, lm)
		}
	}
}

// lossTruth is how many messages the server removed before it delivered
// them to consumer: every stream sequence below the consumer's position
// was delivered or skipped, and every one below the stream's first and
// above its position is gone. Exact while nothing was redelivered.
func lossTruth(t testing.TB, st jetstream.Stream, c jetstream.Consumer) (lost uint64, ci *jetstream.ConsumerInfo, si *jetstream.StreamInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ci, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	si, err = st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumRedelivered != 0 {
		t.Fatalf("%d redelivered: the truth is not exact", ci.NumRedelivered)
	}
	pos := ci.Delivered.Stream
	lost = pos - ci.Delivered.Consumer
	if first := si.State.FirstSeq; first > pos+1 {
		lost += first - 1 - pos
	}
	return lost, ci, si
}

// A stream keeps 1,000 messages, discarding the oldest, while its node
// takes 10 a second of the 50 published: retention-risk warns before the
// first message is lost, data-loss reports it when it is, with
// messagesLost equal to what the stream removed before delivering it.
func TestScenarioRetentionRiskThenDataLoss(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	st := w.createStream(jetstream.StreamConfig{Name: "RETAIN", Subjects: []string{"retain.>"}, MaxMsgs: 1000})
	cfg := nodeConfig("slow", "eu")
	cfg.MaxAckPending = 10 // delivered only as fast as it works
	c := w.createConsumer("RETAIN", cfg)
	wk := w.track("slow", testutil.StartWorker(t, w.url, "RETAIN", "slow"))
	wk.Limit(10)
	reg := prometheus.NewRegistry()
	w.startEngineWith(reg)
	pub := testutil.StartPublisher(t, w.url, "retain", 50)
	start := time.Now()

	// The backlog grows 40/s and reaches 1,000 after about 25s.
	risk := w.waitEvents(events.TypeNodeDown, 1, 25*time.Second)[0]
	lost, ci, _ := lossTruth(t, st, c)
	d := decode[events.NodeDown](t, risk)
	t.Logf("retention-risk %.1fs after publishing began, forecast %.0fs, %d pending", at(risk).Sub(start).Seconds(), d.LagMetrics.SecondsToLoss, ci.NumPending)
	if d.Pattern != "retention-risk" || d.Level != events.LevelWarning || d.NodeID != "slow" {
		t.Fatalf("first node.down %+v, want retention-risk for slow", d)
	}
	if lost != 0 || d.LagMetrics.MessagesLost != 0 {
		t.Fatalf("retention-risk came after %d messages were lost (%d reported)", lost, d.LagMetrics.MessagesLost)
	}
	if s := d.LagMetrics.SecondsToLoss; s <= 0 || s >= 300 {
		t.Fatalf("retention-risk with secondsToLoss %v, want within the five-minute horizon", s)
	}

	loss := w.waitEvents(events.TypeNodeDown, 2, 40*time.Second)[1]
	ld := decode[events.NodeDown](t, loss)
	t.Logf("data-loss %.1fs after publishing began", at(loss).Sub(start).Seconds())
	if ld.Pattern != "data-loss" || ld.Level != events.LevelCritical || ld.NodeID != "slow" {
		t.Fatalf("second node.down %+v, want data-loss for slow", ld)
	}
	if ld.LagMetrics.MessagesLost <= 0 || ld.LagMetrics.SecondsToLoss != 0 {
		t.Fatalf("data-loss lagMetrics %+v, want messages lost and loss under way", ld.LagMetrics)
	}
	ups := w.waitEvents(events.TypeNodeUp, 1, 10*time.Second)
	if up := decode[events.NodeUp](t, ups[0]); up.Pattern != "retention-risk" || up.Reason != events.ReasonSuperseded {
		t.Fatalf("node.up %+v, want the warning superseded by the loss", up)
	}

	// Publishing stops, the node catches up: what it lost is what the
	// stream removed before delivering it.
	pub.Rate.Store(0)
	wk.Limit(0)
	var truth uint64
	testutil.CheckFor(t, 30*time.Second, func() error {
		lost, ci, _ := lossTruth(t, st, c)
		if ci.NumPending+uint64(ci.NumAckPending) != 0 {
			return fmt.Errorf("%d pending, %d ack pending", ci.NumPending, ci.NumAckPending)
		}
		truth = lost
		return nil
	})
	w.ticks(2)
	n, ok := w.nodeStatus("slow")
	if !ok || n.MessagesLost != int(truth) || truth == 0 {
		t.Fatalf("messagesLost %d, the stream removed %d undelivered", n.MessagesLost, truth)
	}
	t.Logf("%d messages lost of %d published", truth, pub.Published())
	if got := metricValue(t, reg, "happen_node_messages_lost_total", "slow"); got != float64(truth) {
		t.Errorf("happen_node_messages_lost_total %v, want %d", got, truth)
	}
	if got := metricValue(t, reg, "happen_node_seconds_to_loss", "slow"); got != -1 {
		t.Errorf("happen_node_seconds_to_loss %v once caught up, want -1", got)
	}
	if n.TimeLagSeconds != 0 || n.SecondsToDrain != 0 || n.SecondsToLoss != -1 {
		t.Errorf("caught up: time lag %v, to drain %v, to loss %v; want 0, 0, -1", n.TimeLagSeconds, n.SecondsToDrain, n.SecondsToLoss)
	}

	// A window without loss and the rule's hold: the incident ends.
	ups = w.waitEvents(events.TypeNodeUp, 2, 40*time.Second)
	if up := decode[events.NodeUp](t, ups[1]); up.Pattern != "data-loss" || up.Reason != events.ReasonCleared ||
		ups[1].Context.CorrelationID != loss.Context.CorrelationID {
		t.Fatalf("node.up %+v, want the data-loss incident cleared", up)
	}
	for _, e := range w.all() {
		var p struct{ Pattern string }
		if err := e.Decode(&p); err == nil && p.Pattern != "retention-risk" && p.Pattern != "data-loss" {
			t.Errorf("unexpected %s %s", e.Type, e.Payload)
		}
	}
}

// metricValue is the value of metric's series for node id in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, metric, id string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == id {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s series for node %s", metric, id)
	return 0
}

// An interest stream and a work-queue stream, each limited to 1,000
// messages and discarding the oldest, take 50 msgs/s that their nodes
// keep up with. Acks remove what they take, so their first sequence races
// far past the limit: no retention risk and no loss, for nodes reading
// the whole stream or a sparse part of it.
func TestScenarioInterestAndWorkQueueRaiseNeither(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	interest := w.createStream(jetstream.StreamConfig{Name: "INTEREST", Subjects: []string{"interest.>"},
		Retention: jetstream.InterestPolicy, MaxMsgs: 1000})
	work := w.createStream(jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"},
		Retention: jetstream.WorkQueuePolicy, MaxMsgs: 1000})
	for _, n := range []struct{ stream, id, filter string }{
		{"INTEREST", "billing", ""}, {"INTEREST", "audit", ""}, {"INTEREST", "rare", "interest.7"}, {"WORK", "jobs", ""},
	} {
		cfg := nodeConfig(n.id, "eu")
		cfg.FilterSubject = n.filter
		w.createConsumer(n.stream, cfg)
		w.track(n.id, testutil.StartWorker(t, w.url, n.stream, n.id))
	}
	reg := prometheus.NewRegistry()
	w.startEngineWith(reg)
	testutil.StartPublisher(t, w.url, "interest", 50)
	testutil.StartPublisher(t, w.url, "work", 50)

	w.quietFor(30, "interest and work-queue streams")
	for _, st := range []jetstream.Stream{interest, work} {
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.FirstSeq <= 1000 {
			t.Fatalf("%s first sequence %d: acks did not carry it past the limit", info.Config.Name, info.State.FirstSeq)
		}
	}
	for _, id := range []string{"billing", "audit", "rare", "jobs"} {
		n, ok := w.nodeStatus(id)
		if !ok || !n.RetentionLimited || n.MessagesLost != 0 || n.LossRate != 0 {
			t.Errorf("%s: %+v, want a limited stream and nothing lost", id, n)
		}
	}
	// The series exist for every node, nothing lost.
	if err := ptestutil.GatherAndCompare(reg, strings.NewReader(`
# HELP happen_node_messages_lost_total Messages the stream's limits removed before a node was delivered them.
# TYPE happen_node_messages_lost_total counter
happen_node_messages_lost_total{consumer="audit",group="eu",node="audit",stream="INTEREST"} 0
happen_node_messages_lost_total{consumer="billing",group="eu",node="billing",stream="INTEREST"} 0
happen_node_messages_lost_total{consumer="jobs",group="eu",node="jobs",stream="WORK"} 0
happen_node_messages_lost_total{consumer="rare",group="eu",node="rare",stream="INTEREST"} 0
`), "happen_node_messages_lost_total"); err != nil {
		t.Error(err)
	}
	if n := ptestutil.CollectAndCount(reg, "happen_node_time_lag_seconds"); n != 4 {
		t.Errorf("%d happen_node_time_lag_seconds series, want 4", n)
	}
}
