package engine_test

import (
	"context"
	"net"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Each scenario runs the built-in rules at a 1s interval against a real
// server, with every node a durable consumer worked on its own connection,
// and checks exactly what was emitted: the pattern, the nodes, and nothing
// else. Detection latencies are logged; docs/performance.md quotes them.

func twoZones(t *testing.T) *world {
	w := newWorld(t)
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		w.addNode(id, "eu")
	}
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addNode(id, "us")
	}
	return w
}

// steadyTwoZones is twoZones with 20 msgs/s published and the engine
// watching for ticks ticks: healthy flow, before a fault is injected.
func steadyTwoZones(t *testing.T, ticks int) *world {
	w := twoZones(t)
	w.publish(20)
	w.startEngine(nil)
	w.ticks(ticks)
	return w
}

func TestScenarioNodeFailureAndRecovery(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 5)
	w.expectEvents(0, "healthy flow")

	fault := time.Now()
	w.workers["eu-2"].Kill()
	downs := w.waitEvents(events.TypeNodeDown, 1, 20*time.Second)
	t.Logf("node-failure detected %.1fs after the fault", time.Since(fault).Seconds())
	d := nodeDowns(t, downs)[0]
	if d.NodeID != "eu-2" || d.Pattern != "node-failure" || d.Rule != "node-failure" || d.Level != "critical" {
		t.Fatalf("node.down = %+v", d)
	}
	if !reflect.DeepEqual(d.AffectedNodes, []string{"eu-2"}) || d.Group != "eu" || d.Stream != stream || d.Consumer != "eu-2" {
		t.Fatalf("node.down = %+v", d)
	}
	if d.LagMetrics.MessagesWaiting <= 0 || d.LagMetrics.MessagesWaiting != d.LagMetrics.NumPending+d.LagMetrics.AckPending {
		t.Fatalf("lagMetrics = %+v", d.LagMetrics)
	}
	if downs[0].Context.CorrelationID == "" || downs[0].Context.Sender != "happen-engine/test" || downs[0].Context.Timestamp == 0 {
		t.Fatalf("context = %+v", downs[0].Context)
	}

	w.workers["eu-2"].Start()
	ups := w.waitEvents(events.TypeNodeUp, 1, 20*time.Second)
	up := decode[events.NodeUp](t, ups[0])
	if up.NodeID != "eu-2" || up.Pattern != "node-failure" || up.DownSeconds <= 0 {
		t.Fatalf("node.up = %+v", up)
	}
	if ups[0].Context.CorrelationID != downs[0].Context.CorrelationID || ups[0].Context.CausationID != downs[0].Context.ID {
		t.Fatalf("node.up context %+v does not point at node.down %+v", ups[0].Context, downs[0].Context)
	}
	w.ticks(3)
	w.expectEvents(2, "want exactly node.down and node.up")
}

// The eu zone reaches NATS through one link; cutting it drops every eu
// connection at once, as a network partition does.
func TestScenarioPartition(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	link := testutil.NewProxy(t, w.srv.Addr().String())
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		w.addNodeVia("nats://"+link.Addr(), id, "eu")
	}
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addNode(id, "us")
	}
	w.publish(20)
	w.startEngine(nil)
	w.ticks(5)

	fault := time.Now()
	link.Cut()
	downs := w.waitEvents(events.TypeNodeDown, 3, 20*time.Second)
	t.Logf("partition detected %.1fs after the cut", time.Since(fault).Seconds())
	w.ticks(4)
	downs = w.ofType(events.TypeNodeDown)
	nd := nodeDowns(t, downs)
	if got := ids(nd); !reflect.DeepEqual(got, []string{"eu-1", "eu-2", "eu-3"}) {
		t.Fatalf("node.down for %v, want the eu group only: %s", got, summary(w.all()))
	}
	for i, d := range nd {
		if d.Pattern != "partition" || d.Rule != "partition" || d.Group != "eu" || d.Level != "critical" {
			t.Fatalf("node.down %+v, want pattern partition", d)
		}
		if !reflect.DeepEqual(d.AffectedNodes, []string{"eu-1", "eu-2", "eu-3"}) {
			t.Fatalf("affectedNodes = %v", d.AffectedNodes)
		}
		if downs[i].Context.CorrelationID != downs[0].Context.CorrelationID {
			t.Fatal("node.down events of one partition have different correlationIds")
		}
	}
	w.expectEvents(3, "want the eu group's three node.down only")

	// The link heals; the workers reconnect by themselves.
	link.Heal()
	ups := w.waitEvents(events.TypeNodeUp, 3, 30*time.Second)
	for _, u := range ups {
		up := decode[events.NodeUp](t, u)
		if u.Context.CorrelationID != downs[0].Context.CorrelationID || up.Pattern != "partition" {
			t.Fatalf("node.up %+v does not end the partition incident", up)
		}
	}
}

func TestScenarioBottleneck(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 5)

	// eu-1 still consumes, at 10/s against 20/s arriving.
	fault := time.Now()
	w.workers["eu-1"].Slow(100 * time.Millisecond)
	d := w.waitNodeDown(45 * time.Second)
	t.Logf("bottleneck detected %.1fs after the slowdown began", time.Since(fault).Seconds())
	if d.NodeID != "eu-1" || d.Pattern != "bottleneck" || d.Level != "warning" {
		t.Fatalf("node.down = %+v; all: %s", d, summary(w.all()))
	}
	if d.LagMetrics.AckRate <= 0 || d.LagMetrics.LagGrowthRate <= 0 {
		t.Fatalf("a bottleneck consumes and lags: %+v", d.LagMetrics)
	}
	w.ticks(3)
	w.expectEvents(1, "want only the bottleneck")
}

func TestScenarioOverload(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	for _, wk := range w.workers {
		wk.Slow(25 * time.Millisecond) // each node handles about 40/s
	}
	p := w.publish(15)
	w.startEngine(nil)
	w.ticks(8) // let the publish-rate baseline settle

	fault := time.Now()
	p.Rate.Store(90)
	sd := w.waitSystemDown(30 * time.Second)
	t.Logf("overload detected %.1fs after publishing rose", time.Since(fault).Seconds())
	if sd.Pattern != "overload" || sd.Rule != "system-overload" || sd.Level != "warning" {
		t.Fatalf("system.down = %+v", sd)
	}
	if sd.Metrics.Nodes != 6 || sd.Metrics.LaggingFraction < 0.5 || sd.Metrics.PublishRate <= sd.Metrics.PublishRateBaseline {
		t.Fatalf("metrics = %+v", sd.Metrics)
	}
	if len(sd.AffectedNodes) < 3 {
		t.Fatalf("affectedNodes = %v", sd.AffectedNodes)
	}
	w.ticks(5)
	w.expectEvents(1, "want one system.down and no node.down")
}

func TestScenarioQuietThingsStayQuiet(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	// An idle stream with a worked consumer and one nobody works: no work,
	// so nothing is wrong with either.
	w.addStream("IDLE", "idle.>")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"idle-worked", "idle-unworked"} {
		if _, err := w.js.CreateOrUpdateConsumer(ctx, "IDLE", jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	w.publish(10)
	w.startEngine(nil)
	w.ticks(4)
	// A short burst the nodes absorb.
	w.burst(400)
	w.ticks(15)
	w.expectEvents(0, "quiet scenario")
}

// A node whose handler is stuck keeps its connection and keeps taking
// messages, but never acks one: after AckWait the server redelivers them,
// which moves the delivered sequence as acks would. It is still a node
// failure, and nothing else is reported.
func TestScenarioStuckHandlerIsANodeFailure(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	// Redelivered a second after it is taken, not the harness's 30s.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, stream, "eu-3")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.AckWait = time.Second
	if _, err := w.js.UpdateConsumer(ctx, stream, cfg); err != nil {
		t.Fatal(err)
	}
	stuck := w.workers["eu-3"]
	w.publish(20)
	w.startEngine(nil)
	w.ticks(5)
	fault := time.Now()
	stuck.Hang()
	d := w.waitNodeDown(20 * time.Second)
	t.Logf("stuck handler detected %.1fs after the fault", time.Since(fault).Seconds())
	if d.NodeID != "eu-3" || d.Pattern != "node-failure" || d.LagMetrics.SecondsSinceLastAck < 2 {
		t.Fatalf("node.down = %+v", d)
	}
	w.ticks(3)
	w.expectEvents(1, "want only eu-3's node.down")
}

// NATS goes away for a few seconds under the engine: the engine is blind,
// not the nodes. It says so on /healthz, raises no node.down, and comes
// back without a storm once the server and the workers are back. An
// incident open before the outage neither ends nor repeats across it.
func TestScenarioServerRestartIsNotANodeFailure(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 5)
	w.workers["us-3"].Kill()
	before := w.waitEvents(events.TypeNodeDown, 1, 20*time.Second)
	health := httpapi.Handler(w.eng, prometheus.NewRegistry())
	healthz := func() int {
		rec := httptest.NewRecorder()
		health.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code
	}
	if code := healthz(); code != 200 {
		t.Fatalf("/healthz = %d while sampling", code)
	}

	port := w.srv.Addr().(*net.TCPAddr).Port
	w.srv.Shutdown()
	w.srv.WaitForShutdown()
	down := time.Now()
	testutil.Eventually(t, 10*time.Second, func() bool { return healthz() == 503 && w.eng.Status().Blind }, "/healthz 503 while blind")
	t.Logf("/healthz turned 503 %.1fs after the server went away", time.Since(down).Seconds())
	// The fault: the outage lasts 4s, long enough for every node to look
	// stalled were the engine to judge what it cannot see. A duration of
	// the injected fault, not a wait for a condition.
	time.Sleep(time.Until(down.Add(4 * time.Second)))

	opts := w.opts.Clone()
	opts.Port = port
	w.srv = testutil.StartServer(t, opts)
	testutil.Eventually(t, 20*time.Second, func() bool { return healthz() == 200 }, "/healthz 200 after the restart")
	w.ticks(12)
	w.expectEvents(1, "across a server restart, want only the node.down from before")
	w.workers["us-3"].Start()
	ups := w.waitEvents(events.TypeNodeUp, 1, 20*time.Second)
	if ups[0].Context.CorrelationID != before[0].Context.CorrelationID {
		t.Fatalf("node.up %+v does not end the incident from before the outage", ups[0].Context)
	}
}

func TestScenarioDeletedConsumerLeavesWithoutAlert(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 4)

	w.workers["us-3"].Kill()
	downs := w.waitEvents(events.TypeNodeDown, 1, 20*time.Second)
	w.deleteNode("us-3")
	ups := w.waitEvents(events.TypeNodeUp, 1, 10*time.Second)
	up := decode[events.NodeUp](t, ups[0])
	if up.NodeID != "us-3" || up.Reason != events.ReasonLeft || ups[0].Context.CorrelationID != downs[0].Context.CorrelationID {
		t.Fatalf("node.up = %+v", up)
	}
	w.waitNodeGone("us-3")
	w.ticks(3)
	w.expectEvents(2, "want node.down then node.up only")
}

// The engine is redeployed in the middle of an incident. The new one
// picks the incident up from JetStream: no second node.down under a new
// id while the node is still dead, and the node.up that ends it carries the
// original correlationId.
func TestScenarioIncidentSurvivesEngineRestart(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 4)

	w.workers["eu-2"].Kill()
	downs := w.waitEvents(events.TypeNodeDown, 1, 20*time.Second)
	w.stopEngine()
	w.startEngine(nil)
	// Past the new engine's warm-up and past the 10s a node it has not
	// learned yet may be silent, the node still dead: neither a second
	// node.down nor a node.up.
	w.ticks(12)
	w.expectEvents(1, "the restarted engine kept the incident open, no more")
	w.workers["eu-2"].Start()
	ups := w.waitEvents(events.TypeNodeUp, 1, 20*time.Second)
	if ups[0].Context.CorrelationID != downs[0].Context.CorrelationID || ups[0].Context.CausationID != downs[0].Context.ID {
		t.Fatalf("node.up %+v does not end the incident %+v", ups[0].Context, downs[0].Context)
	}
	w.expectEvents(2, "want node.down then node.up")
}
