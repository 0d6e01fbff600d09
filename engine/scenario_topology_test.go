package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Detection must not depend on how NATS is deployed. These scenarios cut
// the one link between two parts of a deployment other than a cluster: a
// leaf-node site's connection to its hub, and the gateway between the two
// clusters of a supercluster.

// A site's workers reach the hub's streams through the site's leaf server
// and its one leaf connection. Cutting it stops every site-b node at once,
// while site-a, on the hub, flows on: a partition of site-b, reported by
// the engine on the hub.
func TestScenarioTopologyLeafSiteCutFromHub(t *testing.T) {
	t.Parallel()
	site := testutil.RunLeafSite(t)
	w := newWorldOn(t, site.Hub, jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	for _, id := range []string{"a-1", "a-2", "a-3"} {
		w.addNode(id, "site-a")
	}
	siteB := []string{"b-1", "b-2", "b-3"}
	for _, id := range siteB {
		w.addNodeVia(site.Leaf.ClientURL(), id, "site-b")
	}
	w.publish(20)
	w.startEngine(nil)
	w.quietFor(5, "steady flow through the leaf connection")

	fault := time.Now()
	site.Cut()
	w.expectPartition(fault, "site-b", siteB)

	site.Heal()
	w.expectPartitionEnds(siteB)
}

// The engine runs at the site, on the leaf server, so it too reaches the
// hub's JetStream only through the leaf connection. When that is cut it
// can see nothing: it is blind (its JetStream requests find no responder),
// and it must say so rather than report the hub's nodes, which flow on, or
// its own site's. Once the link heals it judges again, and the nodes that
// recovered with it are not reported either.
func TestScenarioTopologyEngineAtLeafSite(t *testing.T) {
	t.Parallel()
	site := testutil.RunLeafSite(t)
	// Every connection of the world but the hub's workers and publisher is
	// at the site: the events the engine emits during the cut reach it.
	w := newWorldOn(t, site.Leaf, jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	hub := site.Hub.ClientURL()
	for _, id := range []string{"a-1", "a-2", "a-3"} {
		w.addNodeVia(hub, id, "site-a")
	}
	for _, id := range []string{"b-1", "b-2", "b-3"} {
		w.addNode(id, "site-b")
	}
	testutil.StartPublisher(t, hub, "orders", 20)
	reg := prometheus.NewRegistry()
	w.startEngineOn(site.Leaf.ClientURL(), reg)
	web := httptest.NewServer(httpapi.Handler(w.eng, reg))
	t.Cleanup(web.Close)
	w.quietFor(5, "steady flow with the engine at the site")

	cutAt := time.Now()
	site.Cut()
	testutil.Eventually(t, 10*time.Second, func() bool { return w.eng.Status().Blind }, "engine blind after the cut")
	t.Logf("engine blind %.1fs after the cut: %s", time.Since(cutAt).Seconds(), w.eng.Status().Reason)
	// Unhealthy within two intervals of going blind, and blind, not
	// isolated: a leaf server has no cluster of its own to be cut from.
	testutil.CheckFor(t, 5*time.Second, func() error {
		if code, body := httpGet(t, web.URL+"/healthz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/healthz %d %q while blind, want 503", code, body)
		}
		return nil
	})
	if st := w.eng.Status(); st.Healthy || st.Isolated || !st.Blind {
		t.Fatalf("status healthy %v isolated %v blind %v during the cut, want blind only", st.Healthy, st.Isolated, st.Blind)
	}
	// Longer than a stall takes to be judged (10s at this interval): had
	// the engine judged what it cannot see, every node would be reported.
	w.noIncidentsFor(max(3*time.Second, time.Until(cutAt.Add(13*time.Second))), "while the engine's site is cut off", func() error {
		if st := w.eng.Status(); !st.Blind || st.Isolated {
			return fmt.Errorf("status blind %v isolated %v during the cut, want blind only", st.Blind, st.Isolated)
		}
		return nil
	})

	site.Heal()
	site.WaitLinked(t, 10*time.Second)
	testutil.Eventually(t, 15*time.Second, func() bool { return !w.eng.Status().Blind }, "engine sees JetStream after the heal")
	evals := servedMetric(t, web.URL, "happen_rule_evaluations_total")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return servedMetric(t, web.URL, "happen_rule_evaluations_total") > evals
	}, "rules evaluated again after the heal")
	w.ticks(3)
	w.expectEvents(0, "an engine cut off with its site reports nothing")
}

// The engine and the streams are in cluster A; the far group's workers are
// connected to cluster B and pull across the gateway. Cutting it stops
// every far node at once while A's own nodes flow on: a partition of far.
func TestScenarioTopologyGatewayCutFarWorkers(t *testing.T) {
	t.Parallel()
	sc := testutil.RunSuperCluster(t, 2, 1)
	w := newWorldOn(t, sc.A[0], jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	for i, id := range []string{"near-1", "near-2", "near-3"} {
		w.addNodeVia(sc.A[i%len(sc.A)].ClientURL(), id, "near")
	}
	far := []string{"far-1", "far-2", "far-3"}
	for _, id := range far {
		w.addNodeVia(sc.B[0].ClientURL(), id, "far")
	}
	w.publish(20)
	w.startEngine(nil)
	w.quietFor(5, "steady flow across the gateway")

	fault := time.Now()
	sc.Cut()
	w.expectPartition(fault, "far", far)

	sc.Heal()
	sc.WaitLinked(t, 15*time.Second)
	w.expectPartitionEnds(far)
}

// The far group's stream lives in cluster B, with its workers and their
// publisher; the engine is in A, beside the near group. Cut off, the far
// nodes work on in B, and the engine in A cannot read their stream: it must
// not report them, nor anything else. What it can honestly say is that it
// cannot see them (unobserved), or that it cannot see at all (blind,
// isolated).
//
// What it sees, measured: the stream list is answered by the meta leader
// (in A) only once every stream's leader has answered, or after 4s, longer
// than the engine's request timeout, and would be until the servers in A
// give the cut one up as gone (minutes). So the first sample after the cut
// times out, and from the next the sampler reads the streams one by one:
// the far nodes unobserved, the near ones judged through the cut. On the
// heal, B's server, which campaigned alone through the cut, may win the
// meta leadership; the election that follows is not isolation.
func TestScenarioTopologyGatewayCutFarStreams(t *testing.T) {
	t.Parallel()
	sc := testutil.RunSuperCluster(t, 2, 1)
	w := newWorldOn(t, sc.A[0], jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateStream(ctx, jetstream.StreamConfig{Name: "FAR", Subjects: []string{"far.>"}, Storage: jetstream.FileStorage,
		Placement: &jetstream.Placement{Cluster: "B"}}); err != nil {
		t.Fatalf("create stream FAR in cluster B: %v", err)
	}
	for i, id := range []string{"near-1", "near-2", "near-3"} {
		w.addNodeVia(sc.A[i%len(sc.A)].ClientURL(), id, "near")
	}
	var farKeys []string
	for _, id := range []string{"far-1", "far-2", "far-3"} {
		w.addNodeOn(sc.B[0].ClientURL(), "FAR", id, "far")
		farKeys = append(farKeys, "FAR/"+id)
	}
	w.publish(20)
	testutil.StartPublisher(t, sc.B[0].ClientURL(), "far", 20)
	reg := prometheus.NewRegistry()
	w.startEngineOn(sc.A[0].ClientURL(), reg)
	web := httptest.NewServer(httpapi.Handler(w.eng, reg))
	t.Cleanup(web.Close)
	w.quietFor(3, "steady flow in both clusters")

	cutAt := time.Now()
	sc.Cut()
	// Longer than a stall takes to be judged (10s at this interval).
	seen := map[string]int{}
	w.noIncidentsFor(max(3*time.Second, time.Until(cutAt.Add(13*time.Second))), "while the gateway is cut", func() error {
		// A sample taken since the cut (At is when it began) either
		// failed, or left the far nodes unobserved.
		st := w.eng.Status()
		switch {
		case st.Isolated:
			seen["isolated"]++
		case st.Blind:
			seen["blind"]++
		case !st.At.After(cutAt):
			seen["not sampled since the cut"]++
		case containsAll(st.Unobserved, farKeys):
			seen["far nodes unobserved"]++
		default:
			return fmt.Errorf("engine judges %v during the cut: unobserved %v", farKeys, st.Unobserved)
		}
		return nil
	})
	t.Logf("during the cut the engine was (polls): %v", seen)
	// Blind only until the stream list is given up for one request per
	// stream: the near nodes are judged through the cut, the far unobserved.
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := w.eng.Status()
		near := 0
		for _, n := range st.Nodes {
			if n.Group == "near" {
				near++
			}
		}
		return !st.Blind && !st.Isolated && st.At.After(cutAt) && near == 3 && containsAll(st.Unobserved, farKeys)
	}, "the near nodes judged during the cut, the far ones unobserved")

	healAt := time.Now()
	sc.Heal()
	sc.WaitLinked(t, 15*time.Second)
	evals := servedMetric(t, web.URL, "happen_rule_evaluations_total")
	testutil.Eventually(t, 30*time.Second, func() bool {
		st := w.eng.Status()
		return !st.Blind && len(st.Nodes) == 6 && len(st.Unobserved) == 0 &&
			servedMetric(t, web.URL, "happen_rule_evaluations_total") > evals
	}, "every node observed and judged again after the heal")
	t.Logf("engine judges every node again %.1fs after the heal", time.Since(healAt).Seconds())
	w.ticks(3)
	w.noIncidentsFor(0, "after the heal", nil)
	// Isolation may have been reported across the heal's election: if so,
	// it ended.
	if iso, rej := len(w.ofType(events.TypeEngineIsolated)), len(w.ofType(events.TypeEngineRejoined)); iso != rej || iso > 1 || len(w.all()) != iso+rej {
		t.Fatalf("want no events but an engine.isolated ended by engine.rejoined: %s", summary(w.all()))
	}
	t.Logf("events: %s", summary(w.all()))
}

// noIncidentsFor watches the events for d (once if d is 0), failing at the
// first node or system incident, and at check's first error if check is
// not nil. The engine may be blind meanwhile, so there are no ticks to
// count: the wait is bounded polling for a fixed span.
func (w *world) noIncidentsFor(d time.Duration, what string, check func() error) {
	w.t.Helper()
	end := time.Now().Add(d)
	testutil.CheckFor(w.t, d+5*time.Second, func() error {
		for _, e := range w.all() {
			switch e.Type {
			case events.TypeNodeDown, events.TypeNodeUp, events.TypeSystemDown, events.TypeSystemUp:
				w.t.Fatalf("%s %s: %s", e.Type, what, summary(w.all()))
			}
		}
		if check != nil {
			if err := check(); err != nil {
				w.t.Fatal(err)
			}
		}
		if time.Now().Before(end) {
			return errNotOver
		}
		return nil
	})
}

var errNotOver = errors.New("span not over yet")

// containsAll reports whether every one of want is in have.
func containsAll(have, want []string) bool {
	for _, s := range want {
		if !slices.Contains(have, s) {
			return false
		}
	}
	return true
}

// expectPartition waits for group's partition, reported as one node.down
// with pattern partition for each of nodes (sorted), sharing a
// correlationId, and fails on anything else emitted by then or in the few
// ticks after.
func (w *world) expectPartition(fault time.Time, group string, nodes []string) {
	w.t.Helper()
	w.waitEvents(events.TypeNodeDown, len(nodes), 20*time.Second)
	w.t.Logf("partition of %s detected %.1fs after the cut", group, time.Since(fault).Seconds())
	w.ticks(4)
	downs := w.ofType(events.TypeNodeDown)
	nd := nodeDowns(w.t, downs)
	if got := ids(nd); !reflect.DeepEqual(got, nodes) {
		w.t.Fatalf("node.down for %v, want %s's %v only: %s", got, group, nodes, summary(w.all()))
	}
	for i, d := range nd {
		if d.Pattern != "partition" || d.Rule != "partition" || d.Group != group || d.Level != "critical" {
			w.t.Fatalf("node.down %+v, want pattern partition of %s", d, group)
		}
		if !reflect.DeepEqual(d.AffectedNodes, nodes) {
			w.t.Fatalf("affectedNodes = %v, want %v", d.AffectedNodes, nodes)
		}
		if downs[i].Context.CorrelationID != downs[0].Context.CorrelationID {
			w.t.Fatal("node.down events of one partition have different correlationIds")
		}
	}
	w.expectEvents(len(nodes), "want the partition's node.down only")
}

// expectPartitionEnds waits for a node.up of each of nodes ending the
// partition incident reported by expectPartition, and fails on anything
// else.
func (w *world) expectPartitionEnds(nodes []string) {
	w.t.Helper()
	downs := w.ofType(events.TypeNodeDown)
	ups := w.waitEvents(events.TypeNodeUp, len(nodes), 30*time.Second)
	var upIDs []string
	for _, u := range ups {
		up := decode[events.NodeUp](w.t, u)
		if u.Context.CorrelationID != downs[0].Context.CorrelationID || up.Pattern != "partition" {
			w.t.Fatalf("node.up %+v does not end the partition incident", up)
		}
		upIDs = append(upIDs, up.NodeID)
	}
	slices.Sort(upIDs)
	if !reflect.DeepEqual(upIDs, nodes) {
		w.t.Fatalf("node.up for %v, want %v", upIDs, nodes)
	}
	w.ticks(3)
	w.expectEvents(2*len(nodes), "want the partition's node.down and node.up only")
}
