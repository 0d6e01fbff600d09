package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The workload's numbers follow from what the built-in ruleset needs at
// the default 1s interval (rulesets/default.yaml, docs/rules.md), so each
// fault is detected for the reason it should be and within seconds:
//
//   - Steady: every node gets steadyRate msgs/s and manages capacity. At a
//     message every 50ms a node acks between every two samples, so its ack
//     cadence is learned during the engine's warm-up and its stall
//     threshold is one interval: a worker whose connection closes is
//     stalled one interval after its last ack. With capacity at 2.5 times
//     the arrivals a node keeps up even on a loaded machine, and its lag
//     floor (a message or two in flight) stays far below the lagging
//     allowance of max(10, 1.5 x 20) = 30.
//   - Bottleneck: the node's capacity drops to bottleneckCapacity, half its
//     arrivals, so its lag climbs 10/s while it keeps acking. Its lag floor
//     (the least lag of the last three samples) passes the allowance of 30
//     and the rule's bottleneckLag of 20 about 5s in; the rule's `for: 8s`
//     then fires it about 14s after the cut, the ~15s of steady climbing
//     the rule asks for. Restored to capacity, the node drains its backlog
//     (~150) at capacity-steadyRate = 30/s, in about 5s.
//   - Overload: every node gets overloadRate, 1.6 times its capacity, so
//     all six fall behind at 30/s together (the rule needs at least two and
//     half of those consuming). The allowance grows with the window's
//     arrival rate (1.5 x (20 + 6t) after t seconds), the lag floor with
//     30(t-2): every node is lagging about 5s in, and the rule's `for: 3s`
//     fires it about 9s after the rise. Publishing four times faster than
//     usual also keeps the per-node bottleneck rule off (arrivalRise > 1.2
//     for the node and the system), so the overload is one system.down.
//     Back at steadyRate the nodes drain at 30/s.
const (
	steadyRate         = 20 // msgs/s per node
	capacity           = 50 // msgs/s a healthy worker handles
	bottleneckCapacity = 10 // msgs/s of the bottlenecked worker
	overloadRate       = 80 // msgs/s per node during the overload
)

// streamName is the demo's stream; each node's work is one subject of it.
const streamName = "ORDERS"

// node is one consumer of the demo: its id, group and the subject its
// work is published on (its consumer's filter).
type node struct {
	id, group, subject string
}

// topology is the demo's six nodes in two groups.
func topology() []node {
	var ns []node
	for _, g := range []string{"eu", "us"} {
		for i := 1; i <= 3; i++ {
			ns = append(ns, node{
				id:      fmt.Sprintf("orders-%s-%d", g, i),
				group:   g,
				subject: fmt.Sprintf("orders.%s.%d", g, i),
			})
		}
	}
	return ns
}

// setupStream (re)creates the stream and one durable pull consumer per
// node. A stream left from an earlier run on the same data folder is
// removed first, so every run starts from the same state.
func setupStream(ctx context.Context, js jetstream.JetStream, nodes []node) error {
	if err := js.DeleteStream(ctx, streamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("remove stream %s of an earlier run: %w", streamName, err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     streamName,
		Subjects: []string{"orders.>"},
		// Each message interests exactly one consumer (the filters do not
		// overlap), so it is gone once its node acks it: the stream stays
		// small however long --keep runs.
		Retention: jetstream.InterestPolicy,
		Storage:   jetstream.MemoryStorage,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", streamName, err)
	}
	for _, n := range nodes {
		if _, err := js.CreateOrUpdateConsumer(ctx, streamName, jetstream.ConsumerConfig{
			Durable:       n.id,
			FilterSubject: n.subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       30 * time.Second,
			MaxAckPending: 1000,
			Metadata:      map[string]string{"happen.node": n.id, "happen.group": n.group},
		}); err != nil {
			return fmt.Errorf("create consumer %s: %w", n.id, err)
		}
	}
	return nil
}

// worker is one node of the application: it consumes its durable consumer
// on its own connection and acks each message, at most capacity messages
// a second. Kill closes its connection as a crash would; Start connects
// again.
type worker struct {
	url, stream, consumer string

	capacity atomic.Int64 // msgs/s
	acks     atomic.Int64

	paceMu   sync.Mutex
	nextSlot time.Time // when the next message may start

	mu  sync.Mutex
	run *workerRun // nil while not running
}

// workerRun is one connection of a worker, from Start to Kill or Stop.
type workerRun struct {
	nc     *nats.Conn
	cc     jetstream.ConsumeContext
	cancel context.CancelFunc // ends a handler waiting for its slot
}

func newWorker(url, stream, consumer string, perSecond int) *worker {
	w := &worker{url: url, stream: stream, consumer: consumer}
	w.capacity.Store(int64(perSecond))
	return w
}

// SetCapacity changes how many messages a second the worker handles.
func (w *worker) SetCapacity(perSecond int) { w.capacity.Store(int64(perSecond)) }

// Start connects and consumes. Starting a running worker is a no-op.
func (w *worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.run != nil {
		return nil
	}
	nc, err := nats.Connect(w.url, nats.Name("demo-worker-"+w.consumer),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("worker %s: connect to %s: %w", w.consumer, w.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("worker %s: %w", w.consumer, err)
	}
	c, err := js.Consumer(ctx, w.stream, w.consumer)
	if err != nil {
		nc.Close()
		return fmt.Errorf("worker %s: look up consumer: %w", w.consumer, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	cc, err := c.Consume(func(m jetstream.Msg) { w.handle(rctx, m) },
		// A small buffer: what the client holds counts as ack pending, and
		// a crash strands it until AckWait.
		jetstream.PullMaxMessages(20), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		cancel()
		nc.Close()
		return fmt.Errorf("worker %s: consume: %w", w.consumer, err)
	}
	w.run = &workerRun{nc: nc, cc: cc, cancel: cancel}
	return nil
}

// handle is the node's work on one message: wait for its slot, ack.
func (w *worker) handle(ctx context.Context, m jetstream.Msg) {
	if !w.pace(ctx) {
		return // stopped or killed: the message stays unacked, as in a crash
	}
	if m.Ack() == nil {
		w.acks.Add(1)
	}
}

// pace holds the handler so the worker starts at most capacity messages a
// second with no burst: its slots are spaced 1/capacity apart. It returns
// false if ctx ended first.
func (w *worker) pace(ctx context.Context) bool {
	r := w.capacity.Load()
	if r <= 0 {
		<-ctx.Done() // no capacity at all: holds the message until stopped
		return false
	}
	w.paceMu.Lock()
	now := time.Now()
	slot := w.nextSlot
	if slot.Before(now) {
		slot = now
	}
	w.nextSlot = slot.Add(time.Second / time.Duration(r))
	w.paceMu.Unlock()
	d := time.Until(slot)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// detach takes the current run from the worker; nil if not running.
func (w *worker) detach() *workerRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.run
	w.run = nil
	return r
}

// Kill closes the worker's connection at once, as a crash or a cut link
// does: the server drops its pull requests, and what it held stays
// unacked until AckWait.
func (w *worker) Kill() {
	if r := w.detach(); r != nil {
		r.nc.Close()
		r.cancel()
		r.cc.Stop()
		waitClosed(r.cc)
	}
}

// Stop ends consuming cleanly.
func (w *worker) Stop() {
	if r := w.detach(); r != nil {
		r.cancel()
		r.cc.Stop()
		waitClosed(r.cc)
		r.nc.Close()
	}
}

// Running reports whether the worker is connected and consuming.
func (w *worker) Running() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.run != nil
}

// waitClosed waits, briefly, until a consume has ended, so no delivery of
// it outlives its worker's run.
func waitClosed(cc jetstream.ConsumeContext) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-cc.Closed():
	case <-t.C:
	}
}

// publisher publishes every node's work, the same rate for each node,
// changeable while it runs.
type publisher struct {
	js       jetstream.JetStream
	subjects []string

	rate      atomic.Int64 // msgs/s per subject
	published atomic.Int64
	failed    atomic.Int64
}

func newPublisher(js jetstream.JetStream, subjects []string, perSecond int) *publisher {
	p := &publisher{js: js, subjects: subjects}
	p.rate.Store(int64(perSecond))
	return p
}

// SetRate changes every node's arrival rate.
func (p *publisher) SetRate(perSecond int) { p.rate.Store(int64(perSecond)) }

// Run publishes until ctx ends. What is owed follows the clock, not the
// ticks, so a goroutine scheduled late on a loaded machine still keeps the
// rate on average; at most one second's worth is made up at once.
func (p *publisher) Run(ctx context.Context) {
	const step = 50 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	last := time.Now()
	owed := 0.0
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			rate := float64(p.rate.Load())
			owed = min(owed+rate*now.Sub(last).Seconds(), rate)
			last = now
			for ; owed >= 1; owed-- {
				seq++
				body := fmt.Appendf(nil, `{"order":%d}`, seq)
				for _, s := range p.subjects {
					// Async keeps the pace when the server is slow to answer;
					// a refusal is counted, and the work of that message lost.
					if _, err := p.js.PublishAsync(s, body); err != nil {
						p.failed.Add(1)
						continue
					}
					p.published.Add(1)
				}
			}
		}
	}
}
