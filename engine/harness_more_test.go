package engine_test

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Helpers for the traffic-class scenarios: other kinds of node, other
// streams, other publishers, and reading the event timeline.

// addStream creates another stream beside ORDERS.
func (w *world) addStream(name string, subjects ...string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
		w.t.Fatal(err)
	}
}

// nodeConfig is the consumer of node id in group, as every node of the
// harness has it.
func nodeConfig(id, group string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: id, AckPolicy: jetstream.AckExplicitPolicy,
		Metadata: map[string]string{"happen.group": group}, AckWait: 30 * time.Second, MaxAckPending: 1000,
	}
}

// addConsumer creates node id's consumer on stream with no worker: a
// consumer nobody works.
func (w *world) addConsumer(stream, id, group string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateOrUpdateConsumer(ctx, stream, nodeConfig(id, group)); err != nil {
		w.t.Fatal(err)
	}
}

// addPushNode creates node id as a durable push consumer of ORDERS,
// delivering to deliver.<id>, and starts a worker subscribed to it on its
// own connection.
func (w *world) addPushNode(id, group string) *testutil.Worker {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := nodeConfig(id, group)
	cfg.DeliverSubject = "deliver." + id
	if _, err := w.js.CreateOrUpdatePushConsumer(ctx, stream, cfg); err != nil {
		w.t.Fatal(err)
	}
	return w.track(id, testutil.StartPushWorker(w.t, w.url, stream, id))
}

// addFetchNode creates node id on ORDERS worked by a Fetch loop taking
// up to batch messages, waiting at most maxWait for them.
func (w *world) addFetchNode(id, group string, batch int, maxWait time.Duration) *testutil.Worker {
	w.t.Helper()
	w.addConsumer(stream, id, group)
	return w.track(id, testutil.StartFetchWorker(w.t, w.url, stream, id, batch, maxWait))
}

// track makes wk the worker of node id.
func (w *world) track(id string, wk *testutil.Worker) *testutil.Worker {
	w.mu.Lock()
	w.workers[id] = wk
	w.mu.Unlock()
	return wk
}

// worker is node id's worker.
func (w *world) worker(id string) *testutil.Worker {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.workers[id]
}

// deleteNode deletes node id's consumer on ORDERS, as an operator retiring
// a service does, then stops its worker, which has nothing left to read.
func (w *world) deleteNode(id string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.js.DeleteConsumer(ctx, stream, id); err != nil {
		w.t.Fatal(err)
	}
	if wk := w.worker(id); wk != nil {
		wk.Stop()
	}
}

// publishBatches publishes n ORDERS messages at once every every plus up
// to jitter.
func (w *world) publishBatches(n int, every, jitter time.Duration) *testutil.BatchPublisher {
	return testutil.StartBatchPublisher(w.t, w.url, "orders", n, every, jitter)
}

// quietFor waits n ticks and fails if any event was emitted, from the
// engine's start on; it fails as soon as one is.
func (w *world) quietFor(n int, what string) {
	w.t.Helper()
	w.ticksUnless(n, func() bool { return len(w.all()) > 0 })
	if evs := w.all(); len(evs) != 0 {
		w.t.Fatalf("%s emitted: %s", what, summary(evs))
	}
}

// waitNodesSeen waits until the engine lists every node in ids.
func (w *world) waitNodesSeen(ids ...string) {
	w.t.Helper()
	testutil.Eventually(w.t, 15*time.Second, func() bool {
		seen := map[string]bool{}
		for _, n := range w.eng.Status().Nodes {
			seen[n.ID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	}, "engine sees %v", ids)
}

// waitNodeGone waits until the engine no longer lists node id: it saw the
// consumer deleted.
func (w *world) waitNodeGone(id string) {
	w.t.Helper()
	testutil.Eventually(w.t, 5*time.Second, func() bool {
		_, ok := w.nodeStatus(id)
		return !ok
	}, "deleted node %s leaves /api/status", id)
}

// nodeStatus is node id as the engine last saw it, and whether it lists it.
func (w *world) nodeStatus(id string) (engine.NodeStatus, bool) {
	for _, n := range w.eng.Status().Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return engine.NodeStatus{}, false
}

// expectAcked fails unless each worker of ids (every worker if none)
// acked at least published-behind: everything published but the last
// moment's.
func (w *world) expectAcked(published, behind int64, ids ...string) {
	w.t.Helper()
	w.mu.Lock()
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(w.workers))
	}
	workers := make([]*testutil.Worker, len(ids))
	for i, id := range ids {
		workers[i] = w.workers[id]
	}
	w.mu.Unlock()
	for i, wk := range workers {
		if wk == nil {
			w.t.Fatalf("no worker %s", ids[i])
		}
		if a := wk.Acks(); a < published-behind {
			w.t.Fatalf("%s acked %d of %d published, want at least %d", ids[i], a, published, published-behind)
		}
	}
}

// at is when e was emitted, by the engine's clock (the test's: one
// process).
func at(e events.Envelope) time.Time { return time.UnixMilli(e.Context.Timestamp) }

// laggingNodes is how many nodes the engine last saw with work waiting
// above min.
func (w *world) laggingNodes(min int) int {
	n := 0
	for _, s := range w.eng.Status().Nodes {
		if s.MessagesWaiting > min {
			n++
		}
	}
	return n
}
