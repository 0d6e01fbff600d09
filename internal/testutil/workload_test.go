package testutil

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Each behaviour of the workload runs against a real server, and the test
// checks both the worker's own counters and what the server saw.

type bench struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
}

func newBench(t *testing.T) *bench {
	t.Helper()
	srv := RunServer(t)
	js := JetStream(t, Connect(t, srv.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}}); err != nil {
		t.Fatal(err)
	}
	return &bench{t: t, url: srv.ClientURL(), js: js}
}

func (b *bench) consumer(cfg jetstream.ConsumerConfig) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.AckWait = 30 * time.Second
	var err error
	if cfg.DeliverSubject != "" {
		_, err = b.js.CreateOrUpdatePushConsumer(ctx, "W", cfg)
	} else {
		_, err = b.js.CreateOrUpdateConsumer(ctx, "W", cfg)
	}
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *bench) info(name string) *jetstream.ConsumerInfo {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c interface {
		Info(context.Context) (*jetstream.ConsumerInfo, error)
	}
	c, err := b.js.Consumer(ctx, "W", name)
	if err != nil {
		// A push consumer is not a pull one.
		c, err = b.js.PushConsumer(ctx, "W", name)
	}
	if err != nil {
		b.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	return info
}

// ackGaps samples w.Acks() for d and returns the longest time the count
// stood still and the largest single step.
func ackGaps(w *Worker, d time.Duration) (longest time.Duration, biggest int64) {
	last, since := w.Acks(), time.Now()
	end := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for now := range tick.C {
		if now.After(end) {
			break
		}
		a := w.Acks()
		if a != last {
			biggest = max(biggest, a-last)
			last, since = a, now
		} else {
			longest = max(longest, now.Sub(since))
		}
	}
	return longest, biggest
}

func TestWorkerAcksEveryPeriod(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "c"})
	w := StartWorker(t, b.url, "W", "c")
	w.AckEvery(time.Second)
	StartPublisher(t, b.url, "w", 40)
	Eventually(t, 10*time.Second, func() bool { return w.Held() >= 20 }, "messages held between batches")
	if p := b.info("c").NumAckPending; p < 10 {
		t.Fatalf("server sees %d ack pending while the worker holds %d", p, w.Held())
	}
	longest, biggest := ackGaps(w, 3500*time.Millisecond)
	if longest < 800*time.Millisecond || biggest < 20 {
		t.Fatalf("acks not in 1s batches: longest still %v, biggest step %d", longest, biggest)
	}
	if w.Batches() < 3 || w.Acks() < 3*20 {
		t.Fatalf("batches %d, acks %d", w.Batches(), w.Acks())
	}
}

func TestWorkerAcksInBatchesOfN(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "c"})
	w := StartWorker(t, b.url, "W", "c")
	w.AckInBatches(25)
	StartPublisher(t, b.url, "w", 50)
	// The handler counts a batch's acks, then the batch: read between
	// batches (acks unchanged across reading the batches), the acks are
	// exactly 25 a batch.
	CheckFor(t, 10*time.Second, func() error {
		a := w.Acks()
		n := w.Batches()
		if a != w.Acks() {
			return errNotYet // a batch in progress
		}
		if n < 4 || a != 25*n {
			return fmt.Errorf("acks %d in %d batches of 25, want four batches and 25 acks each", a, n)
		}
		return nil
	})
	if h := w.Held(); h >= 25 {
		t.Fatalf("holds %d, past the batch size", h)
	}
}

func TestWorkerPausesOnSchedule(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "c"})
	w := StartWorker(t, b.url, "W", "c")
	StartPublisher(t, b.url, "w", 50)
	Eventually(t, 10*time.Second, func() bool { return w.Acks() > 20 }, "acks before pausing")
	w.PauseEvery(600*time.Millisecond, 1500*time.Millisecond)
	longest, _ := ackGaps(w, 3200*time.Millisecond)
	if longest < 500*time.Millisecond || longest > time.Second {
		t.Fatalf("longest pause %v, want about 600ms", longest)
	}
	if p := w.Pauses(); p < 2 {
		t.Fatalf("%d pauses in 3.2s of a 1.5s schedule", p)
	}
	// Between pauses it catches up: nothing left behind.
	Eventually(t, 5*time.Second, func() bool { return b.info("c").NumPending < 10 }, "caught up between pauses")
}

func TestWorkerLimit(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "c"})
	w := StartWorker(t, b.url, "W", "c")
	w.Limit(20)
	StartPublisher(t, b.url, "w", 60)
	Eventually(t, 10*time.Second, func() bool { return w.Acks() > 0 }, "first ack")
	start, a0 := time.Now(), w.Acks()
	Eventually(t, 10*time.Second, func() bool { return time.Since(start) >= 3*time.Second }, "3s of work")
	rate := float64(w.Acks()-a0) / time.Since(start).Seconds()
	if rate < 17 || rate > 22 {
		t.Fatalf("limited to 20/s, acked %.1f/s", rate)
	}
}

func TestPushWorkerKillAndRestart(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "p", DeliverSubject: "deliver.p"})
	w := StartPushWorker(t, b.url, "W", "p")
	StartPublisher(t, b.url, "w", 20)
	Eventually(t, 10*time.Second, func() bool { return w.Acks() >= 20 }, "push worker acks")
	if info := b.info("p"); !info.PushBound {
		t.Fatalf("push consumer not bound: %+v", info)
	}
	killAndRestart(t, b, w, "p", 20, 5, func() {
		Eventually(t, 10*time.Second, func() bool { return !b.info("p").PushBound }, "unbound after kill")
	})
}

// killAndRestart kills w, checks that consumer's work piles up (at least
// pile pending) with no ack while it is dead, then restarts it and checks
// it catches up (under caughtUp pending, pile more acks). whileDead, if
// not nil, checks more once it is dead.
func killAndRestart(t *testing.T, b *bench, w *Worker, consumer string, pile, caughtUp uint64, whileDead func()) {
	t.Helper()
	w.Kill()
	killed := w.Acks()
	if whileDead != nil {
		whileDead()
	}
	Eventually(t, 10*time.Second, func() bool { return b.info(consumer).NumPending >= pile }, "work piles up while dead")
	if w.Acks() != killed {
		t.Fatalf("acked %d while dead", w.Acks()-killed)
	}
	w.Start()
	Eventually(t, 10*time.Second, func() bool {
		return b.info(consumer).NumPending < caughtUp && w.Acks() > killed+int64(pile)
	}, "catches up after restart")
}

func TestFetchWorker(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "f"})
	w := StartFetchWorker(t, b.url, "W", "f", 10, time.Second)
	StartPublisher(t, b.url, "w", 40)
	Eventually(t, 10*time.Second, func() bool { return w.Acks() >= 40 }, "fetch worker acks")
	// Acks come per fetched batch.
	if _, biggest := ackGaps(w, time.Second); biggest < 5 {
		t.Fatalf("largest ack step %d, want batches of about 10", biggest)
	}
	killAndRestart(t, b, w, "f", 40, 20, nil)
}

func TestKilledBatchAckerLosesWhatItHeld(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	b.consumer(jetstream.ConsumerConfig{Durable: "c"})
	w := StartWorker(t, b.url, "W", "c")
	w.AckEvery(time.Hour)
	StartPublisher(t, b.url, "w", 40)
	Eventually(t, 10*time.Second, func() bool { return w.Held() >= 20 }, "messages held")
	w.Kill()
	if w.Held() != 0 || w.Acks() != 0 {
		t.Fatalf("after kill: held %d, acked %d", w.Held(), w.Acks())
	}
	if p := b.info("c").NumAckPending; p < 20 {
		t.Fatalf("server ack pending %d, want what the dead worker held", p)
	}
}

func TestPublisherRamp(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	p := StartPublisher(t, b.url, "w", 10)
	start := time.Now()
	p.Ramp(5, 30)
	Eventually(t, 10*time.Second, func() bool { return p.Rate.Load() == 30 }, "ramp reaches 30")
	at20, ok := p.ReachedAt(20)
	if !ok {
		t.Fatal("rate 20 not in the history")
	}
	// From 10 by 5 a second: 20 after 2s, 30 after 4s.
	if d := at20.Sub(start); d < 1500*time.Millisecond || d > 3*time.Second {
		t.Fatalf("reached 20/s after %v, want about 2s", d)
	}
	at30, _ := p.ReachedAt(30)
	if d := at30.Sub(at20); d < 1500*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("20 to 30/s took %v, want about 2s", d)
	}
	Eventually(t, 5*time.Second, func() bool { return time.Since(at30) > 1500*time.Millisecond }, "past the end")
	if r := p.Rate.Load(); r != 30 {
		t.Fatalf("ramp went past its end: %d", r)
	}
	if p.Published() < 60 {
		t.Fatalf("published %d", p.Published())
	}
}

func TestBatchPublisher(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	p := StartBatchPublisher(t, b.url, "w", 50, 500*time.Millisecond, 200*time.Millisecond)
	// The publisher counts a batch's messages, then the batch: read
	// between batches (published unchanged across reading the batches),
	// it published exactly 50 a batch.
	CheckFor(t, 10*time.Second, func() error {
		m := p.Published()
		n := p.Batches()
		if m != p.Published() {
			return errNotYet // a batch in progress
		}
		if n < 4 || m != 50*n {
			return fmt.Errorf("published %d in %d batches of 50, want four batches", m, n)
		}
		return nil
	})
	sent := p.Sent()
	for i := 1; i < len(sent); i++ {
		// 500ms plus up to 200ms of jitter, with room for scheduling.
		if gap := sent[i].Sub(sent[i-1]); gap < 450*time.Millisecond || gap > 900*time.Millisecond {
			t.Fatalf("batch gap %v, want 500-700ms (450-900ms allowed)", gap)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, "W")
	if err != nil {
		t.Fatal(err)
	}
	CheckFor(t, 5*time.Second, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs < 200 {
			return errNotYet
		}
		return nil
	})
}
