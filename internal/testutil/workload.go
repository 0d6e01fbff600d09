package testutil

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Worker consumes one durable consumer on its own connection, as one node
// of an application would, acking each message after an adjustable
// processing delay. Kill drops its connection like a crash.
type Worker struct {
	t        testing.TB
	url      string
	stream   string
	consumer string
	delay    atomic.Int64 // nanoseconds of work per message
	hung     atomic.Bool  // takes messages and never acks them
	acks     atomic.Int64

	mu sync.Mutex
	nc *nats.Conn
	cc jetstream.ConsumeContext
}

// StartWorker starts consuming stream/consumer; it stops when the test ends.
func StartWorker(t testing.TB, url, stream, consumer string) *Worker {
	t.Helper()
	w := &Worker{t: t, url: url, stream: stream, consumer: consumer}
	w.Start()
	t.Cleanup(w.Stop)
	return w
}

// Start (re)connects and consumes.
func (w *Worker) Start() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	nc, err := nats.Connect(w.url, nats.Name("worker-"+w.consumer), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		w.t.Fatalf("worker %s connect: %v", w.consumer, err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, w.stream, w.consumer)
	if err != nil {
		nc.Close()
		w.t.Fatalf("worker %s consumer: %v", w.consumer, err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		if w.hung.Load() {
			return // a handler stuck on every message: redelivered after AckWait
		}
		if d := time.Duration(w.delay.Load()); d > 0 {
			time.Sleep(d) // the simulated work of a slow node
		}
		if m.Ack() == nil {
			w.acks.Add(1)
		}
	}, jetstream.PullMaxMessages(20), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		nc.Close()
		w.t.Fatalf("worker %s consume: %v", w.consumer, err)
	}
	w.nc, w.cc = nc, cc
}

// Kill drops the worker's connection at once, as a crash would.
func (w *Worker) Kill() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nc != nil {
		w.nc.Close()
		w.nc, w.cc = nil, nil
	}
}

// Stop ends consuming cleanly.
func (w *Worker) Stop() {
	w.mu.Lock()
	cc, nc := w.cc, w.nc
	w.nc, w.cc = nil, nil
	w.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if nc != nil {
		nc.Close()
	}
}

// Slow sets how long each message takes to process.
func (w *Worker) Slow(perMessage time.Duration) { w.delay.Store(int64(perMessage)) }

// Hang makes the worker keep taking messages and never ack them, as a
// node whose handler is stuck while its connection stays up.
func (w *Worker) Hang() { w.hung.Store(true) }

// Acks is how many messages the worker acknowledged.
func (w *Worker) Acks() int64 { return w.acks.Load() }

// Publisher publishes to subjects <prefix>.<n> at a rate tests can change
// while it runs. It stops when the test ends.
type Publisher struct {
	Rate atomic.Int64 // messages per second
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
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			owed += float64(p.Rate.Load()) * step.Seconds()
			for ; owed >= 1; owed-- {
				seq++
				// Async keeps the pace even when the server is slow to ack.
				js.PublishAsync(fmt.Sprintf("%s.%d", prefix, seq%10), []byte(`{"n":1}`))
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return p
}
