package testutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// workerKind is how a worker takes its messages: the three ways an
// application reads a durable consumer.
type workerKind int

const (
	kindConsume workerKind = iota // pull consumer, Consume callback
	kindPush                      // push consumer, deliver subject
	kindFetch                     // pull consumer, Fetch loop
)

// Worker consumes one durable consumer on its own connection, as one node
// of an application would, acking each message after an adjustable
// processing delay. Kill drops its connection like a crash.
//
// Its behaviour can be shaped while it runs: Slow and Limit set its speed,
// AckEvery and AckInBatches make it hold messages and ack them together,
// PauseEvery makes it stop for a while on a schedule, Hang makes it stop
// acking at all.
type Worker struct {
	t        testing.TB
	url      string
	stream   string
	consumer string
	kind     workerKind

	fetchBatch int           // kindFetch: messages per Fetch
	fetchWait  time.Duration // kindFetch: longest wait for a full batch

	delay      atomic.Int64 // nanoseconds of work per message
	limit      atomic.Int64 // at most this many messages per second; 0 for no limit
	hung       atomic.Bool  // takes messages and never acks them
	ackEvery   atomic.Int64 // nanoseconds between acks of everything held; 0 for off
	ackCount   atomic.Int64 // ack once this many are held; 0 for off
	pauseFor   atomic.Int64 // nanoseconds of each scheduled pause
	pauseEvery atomic.Int64 // nanoseconds between the starts of scheduled pauses
	acks       atomic.Int64
	batches    atomic.Int64
	pauses     atomic.Int64

	// hmu guards the state the handler shares with the time-batch flusher
	// and with a handler of the previous connection still finishing.
	hmu        sync.Mutex
	held       []jetstream.Msg
	nextSlot   time.Time // Limit: when the next message may start
	pauseEpoch time.Time // PauseEvery: origin of the schedule
	lastPause  int64     // PauseEvery: index of the last pause counted
	flushOnce  sync.Once

	mu  sync.Mutex
	run *run // nil while not running
}

// run is one connection of a worker and its consumption, from Start to
// Kill or Stop.
type run struct {
	nc   *nats.Conn
	cc   jetstream.ConsumeContext // kindConsume, kindPush
	quit context.CancelFunc       // kindFetch: ends the loop
	done chan struct{}            // kindFetch: closed when the loop has ended
}

// StartWorker starts consuming stream/consumer, a pull consumer, with a
// Consume callback; it stops when the test ends.
func StartWorker(t testing.TB, url, stream, consumer string) *Worker {
	t.Helper()
	return startWorker(t, &Worker{t: t, url: url, stream: stream, consumer: consumer, kind: kindConsume})
}

// StartPushWorker starts consuming stream/consumer, a durable push consumer
// (one with a deliver subject), by subscribing to its deliver subject on its
// own connection. It stops when the test ends.
func StartPushWorker(t testing.TB, url, stream, consumer string) *Worker {
	t.Helper()
	return startWorker(t, &Worker{t: t, url: url, stream: stream, consumer: consumer, kind: kindPush})
}

// StartFetchWorker starts a loop on the pull consumer stream/consumer that
// fetches up to batch messages (waiting at most maxWait for them),
// processes them, acks them and fetches again. It stops when the test ends.
func StartFetchWorker(t testing.TB, url, stream, consumer string, batch int, maxWait time.Duration) *Worker {
	t.Helper()
	return startWorker(t, &Worker{t: t, url: url, stream: stream, consumer: consumer, kind: kindFetch,
		fetchBatch: batch, fetchWait: maxWait})
}

func startWorker(t testing.TB, w *Worker) *Worker {
	t.Helper()
	w.lastPause = -1
	w.Start()
	t.Cleanup(w.Stop)
	return w
}

// Start (re)connects and consumes. It fails the test if the worker is
// already running: a second connection would consume beside the first,
// and nothing would ever end it.
func (w *Worker) Start() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.run != nil {
		w.t.Fatalf("worker %s started while running", w.consumer)
	}
	nc, err := nats.Connect(w.url, nats.Name("worker-"+w.consumer), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		w.t.Fatalf("worker %s connect: %v", w.consumer, err)
	}
	fail := func(what string, err error) {
		nc.Close()
		w.t.Fatalf("worker %s %s: %v", w.consumer, what, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fail("jetstream", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &run{nc: nc}
	if w.kind == kindPush {
		c, err := js.PushConsumer(ctx, w.stream, w.consumer)
		if err != nil {
			fail("push consumer", err)
		}
		if r.cc, err = c.Consume(w.handle); err != nil {
			fail("push consume", err)
		}
		w.run = r
		return
	}
	c, err := js.Consumer(ctx, w.stream, w.consumer)
	if err != nil {
		fail("consumer", err)
	}
	if w.kind == kindFetch {
		var loop context.Context
		loop, r.quit = context.WithCancel(context.Background())
		r.done = make(chan struct{})
		go w.fetchLoop(loop, c, r.done)
	} else if r.cc, err = c.Consume(w.handle, jetstream.PullMaxMessages(20), jetstream.PullExpiry(5*time.Second)); err != nil {
		fail("consume", err)
	}
	w.run = r
}

// fetchLoop is a Fetch-based node: fetch a batch, process it, ack it, and
// fetch again, until ctx ends (Kill, Stop) or its connection is gone. The
// fetch's wait is bound to ctx so that a kill ends it at once.
func (w *Worker) fetchLoop(ctx context.Context, c jetstream.Consumer, done chan struct{}) {
	defer close(done)
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, w.fetchWait)
		batch, err := c.Fetch(w.fetchBatch, jetstream.FetchContext(fctx))
		if err == nil {
			var got []jetstream.Msg
			for m := range batch.Messages() {
				if w.process(m) {
					got = append(got, m)
				}
			}
			for _, m := range got {
				w.settle(m)
			}
			err = batch.Error()
		}
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			// Disconnected or the request failed: retry shortly, as an
			// application's loop would, unless told to end.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// handle is the node's work on one message delivered to a callback.
func (w *Worker) handle(m jetstream.Msg) {
	if w.process(m) {
		w.settle(m)
	}
}

// process does the node's work on m, short of acking it; false when the
// handler is stuck and m must never be acked.
func (w *Worker) process(m jetstream.Msg) bool {
	if w.hung.Load() {
		return false // a handler stuck on every message: redelivered after AckWait
	}
	w.pauseIfScheduled()
	w.pace()
	if d := time.Duration(w.delay.Load()); d > 0 {
		time.Sleep(d) // the simulated work of a slow node
	}
	return true
}

// pauseIfScheduled blocks while the worker is in one of its scheduled
// pauses: the last pauseFor of every pauseEvery since PauseEvery was set,
// the way a GC pause or a periodic flush holds a node up.
func (w *Worker) pauseIfScheduled() {
	p, q := time.Duration(w.pauseFor.Load()), time.Duration(w.pauseEvery.Load())
	if p <= 0 || q <= 0 {
		return
	}
	w.hmu.Lock()
	since := time.Since(w.pauseEpoch)
	phase := since % q
	var rest time.Duration
	if phase >= q-p {
		rest = q - phase
		if i := int64(since / q); i != w.lastPause {
			w.lastPause = i
			w.pauses.Add(1)
		}
	}
	w.hmu.Unlock()
	if rest > 0 {
		time.Sleep(rest) // the pause itself: the node does nothing
	}
}

// pace holds the handler so the worker starts at most limit messages per
// second, with no burst: a node's fixed capacity, exact whatever the
// overhead of acking.
func (w *Worker) pace() {
	r := w.limit.Load()
	if r <= 0 {
		return
	}
	w.hmu.Lock()
	now := time.Now()
	slot := w.nextSlot
	if slot.Before(now) {
		slot = now
	}
	w.nextSlot = slot.Add(time.Second / time.Duration(r))
	w.hmu.Unlock()
	time.Sleep(time.Until(slot)) // the node is busy with earlier messages
}

// settle acks m now, or holds it when the worker acks in batches.
func (w *Worker) settle(m jetstream.Msg) {
	n := w.ackCount.Load()
	if n <= 0 && w.ackEvery.Load() <= 0 {
		w.ack(m)
		return
	}
	w.hmu.Lock()
	w.held = append(w.held, m)
	var batch []jetstream.Msg
	if n > 0 && int64(len(w.held)) >= n {
		batch, w.held = w.held, nil
	}
	w.hmu.Unlock()
	w.ackBatch(batch)
}

// ack acks m and counts it; false if the ack failed.
func (w *Worker) ack(m jetstream.Msg) bool {
	if m.Ack() != nil {
		return false
	}
	w.acks.Add(1)
	return true
}

// ackBatch acks ms together; it counts as a batch ack only if at least one
// of its acks succeeded.
func (w *Worker) ackBatch(ms []jetstream.Msg) {
	acked := false
	for _, m := range ms {
		if w.ack(m) {
			acked = true
		}
	}
	if acked {
		w.batches.Add(1)
	}
}

// flush acks everything held.
func (w *Worker) flush() {
	w.hmu.Lock()
	batch := w.held
	w.held = nil
	w.hmu.Unlock()
	w.ackBatch(batch)
}

// dropHeld forgets held messages: their connection is gone, so the server
// redelivers them after AckWait.
func (w *Worker) dropHeld() {
	w.hmu.Lock()
	w.held = nil
	w.hmu.Unlock()
}

// detach takes the current run from the worker, which is then not
// running; nil if it was not.
func (w *Worker) detach() *run {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.run
	w.run = nil
	return r
}

// Kill drops the worker's connection at once, as a crash would. Messages
// it held for a batch ack are lost with it.
func (w *Worker) Kill() {
	if r := w.detach(); r != nil {
		r.nc.Close()
		if r.quit != nil {
			r.quit()
			<-r.done
		}
	}
	w.dropHeld()
}

// Stop ends consuming cleanly.
func (w *Worker) Stop() {
	r := w.detach()
	if r == nil {
		return
	}
	if r.cc != nil {
		r.cc.Stop()
	}
	if r.quit != nil {
		r.quit()
	}
	r.nc.Close()
	if r.done != nil {
		<-r.done
	}
}

// Slow sets how long each message takes to process.
func (w *Worker) Slow(perMessage time.Duration) { w.delay.Store(int64(perMessage)) }

// Limit caps the worker at perSecond messages a second (0 lifts the cap):
// a node's capacity, exact where Slow's also pays for the ack.
func (w *Worker) Limit(perSecond int) { w.limit.Store(int64(perSecond)) }

// Hang makes the worker keep taking messages and never ack them, as a
// node whose handler is stuck while its connection stays up.
func (w *Worker) Hang() { w.hung.Store(true) }

// AckEvery makes the worker take messages as they come, hold them, and
// ack everything held every period (0 turns it off; held messages are
// then acked at the next period's end). Make the consumer's MaxAckPending
// and AckWait room for what a period holds.
func (w *Worker) AckEvery(period time.Duration) {
	w.ackEvery.Store(int64(period))
	w.flushOnce.Do(func() {
		quit, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			timer := time.NewTimer(period)
			defer timer.Stop()
			for {
				select {
				case <-quit:
					return
				case <-timer.C:
				}
				w.flush()
				next := time.Duration(w.ackEvery.Load())
				if next <= 0 {
					next = 100 * time.Millisecond // off: nothing new is held
				}
				timer.Reset(next)
			}
		}()
		w.t.Cleanup(func() {
			close(quit)
			<-done
		})
	})
}

// AckInBatches makes the worker hold messages and ack them all once n are
// held (0 turns it off).
func (w *Worker) AckInBatches(n int) { w.ackCount.Store(int64(n)) }

// PauseEvery makes the worker stop processing for pause at the end of
// every period, starting now, keeping its connection: a GC pause or a
// periodic flush. A zero pause turns it off.
func (w *Worker) PauseEvery(pause, period time.Duration) {
	w.hmu.Lock()
	w.pauseEpoch = time.Now()
	w.lastPause = -1
	w.hmu.Unlock()
	w.pauseEvery.Store(int64(period))
	w.pauseFor.Store(int64(pause))
}

// Acks is how many messages the worker acknowledged.
func (w *Worker) Acks() int64 { return w.acks.Load() }

// Batches is how many batch acks (AckEvery, AckInBatches) the worker made.
func (w *Worker) Batches() int64 { return w.batches.Load() }

// Pauses is how many scheduled pauses (PauseEvery) held the worker up.
func (w *Worker) Pauses() int64 { return w.pauses.Load() }

// Held is how many messages the worker holds for a batch ack.
func (w *Worker) Held() int {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	return len(w.held)
}

// RatePoint is a publishing rate and when it took effect.
type RatePoint struct {
	At   time.Time
	Rate int64
}

// Publisher publishes to subjects <prefix>.<n> at a rate tests can change
// while it runs, or ramp. It stops when the test ends.
type Publisher struct {
	Rate atomic.Int64 // messages per second

	step      atomic.Int64 // added to Rate every second while ramping
	max       atomic.Int64 // the ramp stops here; 0 for no end
	published atomic.Int64

	mu      sync.Mutex
	history []RatePoint
}

// StartPublisher publishes rate messages per second.
func StartPublisher(t testing.TB, url, prefix string, rate int) *Publisher {
	t.Helper()
	nc := Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p := &Publisher{}
	p.Rate.Store(int64(rate))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		const step = 50 * time.Millisecond
		tick := time.NewTicker(step)
		defer tick.Stop()
		var owed float64
		seq := 0
		var lastStep time.Time // of the ramp; zero while not ramping
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			switch s := p.step.Load(); {
			case s <= 0:
				lastStep = time.Time{}
			case lastStep.IsZero():
				lastStep = time.Now() // the ramp starts from the current rate
			case time.Since(lastStep) >= time.Second:
				lastStep = lastStep.Add(time.Second)
				r := p.Rate.Load() + s
				if m := p.max.Load(); m > 0 && r > m {
					r = m
				}
				p.Rate.Store(r)
			}
			rate := p.Rate.Load()
			p.record(rate)
			owed += float64(rate) * step.Seconds()
			for ; owed >= 1; owed-- {
				seq++
				// Async keeps the pace even when the server is slow to ack.
				if _, err := js.PublishAsync(fmt.Sprintf("%s.%d", prefix, seq%10), []byte(`{"n":1}`)); err == nil {
					p.published.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return p
}

// record notes rate in the history when it changed.
func (p *Publisher) record(rate int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.history); n == 0 || p.history[n-1].Rate != rate {
		p.history = append(p.history, RatePoint{At: time.Now(), Rate: rate})
	}
}

// Ramp raises the rate by step messages per second every second, up to
// max (0 for no end): a linear ramp from the current rate.
func (p *Publisher) Ramp(step, max int) {
	p.max.Store(int64(max))
	p.step.Store(int64(step))
}

// ReachedAt is when the publishing rate first reached rate, and whether it
// has.
func (p *Publisher) ReachedAt(rate int64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.history {
		if h.Rate >= rate {
			return h.At, true
		}
	}
	return time.Time{}, false
}

// Published is how many messages the publisher has sent.
func (p *Publisher) Published() int64 { return p.published.Load() }

// BatchPublisher publishes n messages at once, then waits every plus a
// random part of jitter, and again: a batch producer, or with n 1 and a
// long wait a trickle. It stops when the test ends.
type BatchPublisher struct {
	batches   atomic.Int64
	published atomic.Int64

	mu   sync.Mutex
	sent []time.Time
}

// StartBatchPublisher starts publishing batches to <prefix>.<n>, the first
// at once.
func StartBatchPublisher(t testing.TB, url, prefix string, n int, every, jitter time.Duration) *BatchPublisher {
	t.Helper()
	nc := Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p := &BatchPublisher{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		seq := 0
		for {
			for range n {
				seq++
				if _, err := js.PublishAsync(fmt.Sprintf("%s.%d", prefix, seq%10), []byte(`{"n":1}`)); err == nil {
					p.published.Add(1)
				}
			}
			p.batches.Add(1)
			p.mu.Lock()
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			wait := every
			if jitter > 0 {
				wait += rand.N(jitter)
			}
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return p
}

// Batches is how many batches were published.
func (p *BatchPublisher) Batches() int64 { return p.batches.Load() }

// Published is how many messages were published.
func (p *BatchPublisher) Published() int64 { return p.published.Load() }

// Sent is when each batch was published.
func (p *BatchPublisher) Sent() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.sent...)
}
