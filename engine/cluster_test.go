package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
)

// A server of a three-server cluster dies. The nodes of a stream that lived
// only on it cannot be read: they are unobserved, not down. The replicated
// stream's nodes fail over with their consumers and are never reported
// either: the engine cannot tell a node from a server it lost.
func TestScenarioClusterServerLossIsNotANodeFailure(t *testing.T) {
	t.Parallel()
	servers := testutil.RunCluster(t, 3)
	w := newWorldOn(t, servers[0], jetstream.StreamConfig{
		Name: stream, Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.MemoryStorage,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "SOLO", Subjects: []string{"solo.>"}, Replicas: 1, Storage: jetstream.MemoryStorage,
		Placement: &jetstream.Placement{Tags: []string{"node:s2"}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a-1", "a-2", "b-1", "b-2"} {
		w.addNode(id, id[:1])
	}
	w.addNodeOn(w.url, "SOLO", "solo-1", "c")
	w.publish(10)
	testutil.StartPublisher(t, w.url, "solo", 10)
	w.startEngine(nil)
	w.ticks(5)
	if evs := w.all(); len(evs) != 0 {
		t.Fatalf("healthy cluster emitted: %s", summary(evs))
	}

	servers[2].Shutdown()
	servers[2].WaitForShutdown()
	testutil.Eventually(t, 30*time.Second, func() bool {
		return slices.Contains(w.eng.Status().Unobserved, "SOLO/solo-1")
	}, "solo-1 unobserved once its only server is gone")
	w.ticks(10)
	if downs := w.ofType(events.TypeNodeDown); len(downs) != 0 {
		t.Fatalf("losing a server raised node.down: %s", summary(downs))
	}
	st := w.eng.Status()
	if len(st.Nodes) != 4 || !slices.Contains(st.Unobserved, "SOLO/solo-1") {
		t.Fatalf("observed %d nodes, unobserved %v; want the 4 replicated ones and solo-1 unobserved", len(st.Nodes), st.Unobserved)
	}
}
