package engine_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// An operator restarts the three servers of a cluster one at a time, each
// once the cluster is whole again. Workers, the publisher and the engine
// are given all three URLs and fail over. Nothing is down: no node.down,
// no system.down, and no engine.isolated that outlasts a restart.
func TestScenarioRollingRestart(t *testing.T) {
	t.Parallel()
	c := testutil.RunCutCluster(t, 3)
	urls := c.URLs()
	w := newWorldOn(t, c.Servers[0], jetstream.StreamConfig{
		Name: stream, Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.FileStorage,
	})
	for _, id := range []string{"a-1", "a-2", "b-1", "b-2"} {
		w.addNodeVia(urls, id, id[:1])
	}
	testutil.StartPublisher(t, urls, "orders", 20)
	reg := prometheus.NewRegistry()
	w.startEngineOn(urls, reg)
	web := httptest.NewServer(httpapi.Handler(w.eng, reg))
	t.Cleanup(web.Close)
	w.quietFor(5, "healthy cluster")

	var longest time.Duration // the longest restart, until the cluster was whole again
	for i := range c.Servers {
		start := time.Now()
		c.Restart(t, i)
		waitWhole(t, w.js, c.Servers[i])
		longest = max(longest, time.Since(start))
		w.ticks(5)
		if n := servedMetric(t, web.URL, `happen_events_total{type="node.down"}`); n != 0 {
			t.Fatalf("restarting s%d raised %v node.down: %s", i, n, summary(w.all()))
		}
	}
	w.ticks(5)
	for _, typ := range []string{events.TypeNodeDown, events.TypeSystemDown} {
		if n := servedMetric(t, web.URL, fmt.Sprintf("happen_events_total{type=%q}", typ)); n != 0 {
			t.Fatalf("rolling restart raised %v %s: %s", n, typ, summary(w.all()))
		}
	}
	// An isolation is acceptable only while the engine's own server
	// restarts, and never longer than that restart.
	isolated := servedMetric(t, web.URL, fmt.Sprintf("happen_events_total{type=%q}", events.TypeEngineIsolated))
	rejoined := servedMetric(t, web.URL, fmt.Sprintf("happen_events_total{type=%q}", events.TypeEngineRejoined))
	if isolated != rejoined {
		t.Fatalf("%v engine.isolated but %v engine.rejoined after the rolling restart", isolated, rejoined)
	}
	if isolated > 0 {
		rej := w.ofType(events.TypeEngineRejoined)
		if float64(len(rej)) != rejoined {
			t.Fatalf("received %d of %v engine.rejoined: %s", len(rej), rejoined, summary(w.all()))
		}
		for _, e := range rej {
			if p := decode[events.EngineRejoined](t, e); p.IsolatedSeconds > longest.Seconds() {
				t.Fatalf("isolated for %.1fs, longer than any restart (%v)", p.IsolatedSeconds, longest)
			}
		}
	}
	if st := w.eng.Status(); !st.Healthy || st.Isolated || len(st.Nodes) != 4 {
		t.Fatalf("after the rolling restart: healthy %v isolated %v, %d nodes", st.Healthy, st.Isolated, len(st.Nodes))
	}
}

// waitWhole waits until restarted has caught up with the cluster's
// JetStream state and every ORDERS replica is current again.
func waitWhole(t testing.TB, js jetstream.JetStream, restarted *server.Server) {
	t.Helper()
	testutil.CheckFor(t, 30*time.Second, func() error {
		if !restarted.JetStreamIsCurrent() {
			return fmt.Errorf("%s not current with the meta leader", restarted.Name())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
			return fmt.Errorf("stream cluster %+v", ci)
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s current %v offline %v", r.Name, r.Current, r.Offline)
			}
		}
		return nil
	})
}
