package engine_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
)

// One scenario per class of production traffic the built-in rules must
// get right with no tuning, each against a real server at a 1s interval,
// checking exactly what was emitted. The Healthy ones are traffic that
// looks odd to a naive detector but is nothing wrong: they must stay
// silent. Detection latencies are logged.

// A group with a member that has no work is still partitioned as a whole
// when its link goes: the idle member cannot stall (nothing waits for it),
// but it must not turn the group's partition into node failures.
func TestScenarioClassPartitionWithIdleMember(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.addStream("IDLE", "idle.>")
	link := testutil.NewProxy(t, w.srv.Addr().String())
	via := "nats://" + link.Addr()
	busyEU := []string{"eu-1", "eu-2", "eu-3"}
	for _, id := range busyEU {
		w.addNodeVia(via, id, "eu")
	}
	// Nobody publishes to IDLE: this member of eu never has work.
	w.addNodeOn(via, "IDLE", "eu-idle", "eu")
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addNode(id, "us")
	}
	allEU := append(slices.Clone(busyEU), "eu-idle")
	w.publish(20)
	w.startEngine(nil)
	w.ticks(5)
	w.expectEvents(0, "healthy flow")
	expectIdle(w, "eu-idle")

	fault := time.Now()
	link.Cut()
	w.waitEvents(events.TypeNodeDown, 3, 20*time.Second)
	t.Logf("partition with an idle member detected %.1fs after the cut", time.Since(fault).Seconds())
	w.ticks(4)
	all := w.all()
	for _, e := range all {
		if e.Type != events.TypeNodeDown {
			t.Fatalf("want node.down events only: %s", summary(all))
		}
	}
	nd := nodeDowns(t, all)
	got := ids(nd)
	t.Logf("partition reported for %v, affectedNodes %v", got, nd[0].AffectedNodes)
	for _, id := range busyEU {
		if !slices.Contains(got, id) {
			t.Fatalf("no node.down for %s: %s", id, summary(all))
		}
	}
	for i, d := range nd {
		// The idle member may be reported with its group, but only as
		// part of the partition.
		if !slices.Contains(allEU, d.NodeID) {
			t.Fatalf("node.down for %s outside eu: %s", d.NodeID, summary(all))
		}
		if d.Pattern != "partition" || d.Rule != "partition" || d.Group != "eu" || d.Level != "critical" {
			t.Fatalf("node.down %+v, want pattern partition", d)
		}
		for _, id := range busyEU {
			if !slices.Contains(d.AffectedNodes, id) {
				t.Fatalf("affectedNodes %v lacks %s", d.AffectedNodes, id)
			}
		}
		for _, id := range d.AffectedNodes {
			if !slices.Contains(allEU, id) {
				t.Fatalf("affectedNodes %v names %s outside eu", d.AffectedNodes, id)
			}
		}
		if all[i].Context.CorrelationID != all[0].Context.CorrelationID {
			t.Fatalf("node.down events of one partition have different correlationIds: %s", summary(all))
		}
	}
	if len(got) != len(slices.Compact(got)) {
		t.Fatalf("a node reported twice: %v", got)
	}
	// Cut off with its group, the idle member still has nothing waiting.
	expectIdle(w, "eu-idle")
}

// expectIdle fails unless the engine lists node id as idle, with nothing
// waiting.
func expectIdle(w *world, id string) {
	w.t.Helper()
	n, ok := w.nodeStatus(id)
	if !ok || !n.Idle || n.MessagesWaiting != 0 {
		w.t.Fatalf("%s in /api/status (listed %v): %+v, want idle with nothing waiting", id, ok, n.Node)
	}
}

// Consumers with no work (a dead-letter handler, an audit tail, one
// nobody works) sit beside the busy ones. Publishing rises past what the
// busy nodes manage: one overload, and the idle consumers neither dilute it
// nor show up in it.
func TestScenarioClassOverloadBesideIdleConsumers(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	busy := []string{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3"}
	w.addStream("DLQ", "dlq.>")
	w.addStream("AUDIT", "audit.>")
	w.addNodeOn(w.url, "DLQ", "dlq-handler", "ops")
	w.addNodeOn(w.url, "AUDIT", "audit-tail", "ops")
	w.addConsumer("AUDIT", "audit-archive", "ops")
	for _, id := range busy {
		w.worker(id).Slow(25 * time.Millisecond) // each node handles about 40/s
	}
	p := w.publish(15)
	w.startEngine(nil)
	w.waitNodesSeen(append(slices.Clone(busy), "dlq-handler", "audit-tail", "audit-archive")...)
	w.ticks(8) // let the publish-rate baseline settle
	w.expectEvents(0, "healthy flow")

	fault := time.Now()
	p.Rate.Store(90)
	sd := w.waitSystemDown(30 * time.Second)
	t.Logf("overload beside idle consumers detected %.1fs after publishing rose", time.Since(fault).Seconds())
	if sd.Pattern != "overload" || sd.Rule != "system-overload" || sd.Level != "warning" {
		t.Fatalf("system.down = %+v", sd)
	}
	// Every consumer is counted, but the lagging share is taken over the
	// judged nodes only (engine/flow summarise): the six busy ones, not
	// the three idle consumers.
	if m := sd.Metrics; m.Nodes != len(busy)+3 || m.LaggingFraction < 0.5 ||
		math.Abs(m.LaggingFraction-float64(m.LaggingNodes)/float64(len(busy))) > 1e-9 {
		t.Fatalf("metrics = %+v, want %d nodes and a lagging share of at least half of the %d busy ones",
			m, len(busy)+3, len(busy))
	}
	if len(sd.AffectedNodes) < 3 {
		t.Fatalf("affectedNodes = %v", sd.AffectedNodes)
	}
	for _, id := range sd.AffectedNodes {
		if !slices.Contains(busy, id) {
			t.Fatalf("affectedNodes %v names %s, which has no work", sd.AffectedNodes, id)
		}
	}
	w.ticks(5)
	w.expectEvents(1, "want one system.down and nothing else")
}

// Publishing creeps up by 1 msg/s every second from well below capacity
// (40/s a node) to well above it: lag starts climbing on every node at
// once, slowly at first. One overload, within 30s of the lag starting to
// climb, and no node.down.
func TestScenarioClassSlowRamp(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	const capacity = 40
	for _, wk := range w.workers {
		wk.Limit(capacity)
	}
	p := w.publish(10)
	w.startEngine(nil)
	w.ticks(5)

	rampStart := time.Now()
	p.Ramp(1, 100)
	var crossed, mostLag time.Time
	testutil.Eventually(t, 80*time.Second, func() bool {
		if crossed.IsZero() {
			crossed, _ = p.ReachedAt(capacity + 1)
		}
		if mostLag.IsZero() && w.laggingNodes(50) >= 4 {
			mostLag = time.Now()
		}
		return len(w.ofType(events.TypeSystemDown)) > 0
	}, "system.down during the ramp; got: %s", summary(w.all()))
	sys := w.ofType(events.TypeSystemDown)
	detected := at(sys[0])
	if crossed.IsZero() {
		t.Fatalf("system.down at %.1fs into the ramp, before publishing passed capacity: %s",
			detected.Sub(rampStart).Seconds(), summary(w.all()))
	}
	t.Logf("slow ramp: overload detected %.1fs after the ramp began, %.1fs after it passed capacity (%d/s)",
		detected.Sub(rampStart).Seconds(), detected.Sub(crossed).Seconds(), capacity)
	if mostLag.IsZero() {
		t.Fatalf("system.down before most nodes had over 50 waiting: %s", summary(w.all()))
	}
	t.Logf("slow ramp: most nodes had over 50 waiting %.1fs after capacity was passed", mostLag.Sub(crossed).Seconds())
	if detected.Before(crossed) {
		t.Fatalf("system.down %.1fs before publishing passed capacity", crossed.Sub(detected).Seconds())
	}
	if d := detected.Sub(crossed); d > 30*time.Second {
		t.Fatalf("overload took %.1fs from the lag starting to climb, want within 30s", d.Seconds())
	}
	sd := decode[events.SystemDown](t, sys[0])
	if sd.Pattern != "overload" || sd.Rule != "system-overload" || sd.Level != "warning" || sd.Metrics.LaggingFraction < 0.5 {
		t.Fatalf("system.down = %+v", sd)
	}
	w.ticks(5)
	w.expectEvents(1, "want one system.down and no node.down")
}

// A node crashes while the system is overloaded. The overload does not
// hide it: a node.down node-failure for that node, while the system.down
// is still open.
func TestScenarioClassNodeFailsDuringOverload(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	for _, wk := range w.workers {
		wk.Slow(25 * time.Millisecond) // each node handles about 40/s
	}
	p := w.publish(15)
	w.startEngine(nil)
	w.ticks(8)

	rose := time.Now()
	p.Rate.Store(90)
	if sd := w.waitSystemDown(30 * time.Second); sd.Pattern != "overload" {
		t.Fatalf("system.down = %+v, want the overload", sd)
	}
	t.Logf("overload detected %.1fs after publishing rose", time.Since(rose).Seconds())

	fault := time.Now()
	w.worker("eu-2").Kill()
	d := w.waitNodeDown(30 * time.Second)
	t.Logf("node-failure during overload detected %.1fs after the crash", time.Since(fault).Seconds())
	if d.NodeID != "eu-2" || d.Pattern != "node-failure" || d.Level != "critical" {
		t.Fatalf("node.down = %+v; all: %s", d, summary(w.all()))
	}
	w.ticks(3)
	all := w.all()
	if len(all) != 2 || all[0].Type != events.TypeSystemDown || all[1].Type != events.TypeNodeDown {
		t.Fatalf("want system.down then eu-2's node.down, the overload still open: %s", summary(all))
	}
}

// Nodes that ack in batches (every few seconds, or every N messages) and
// a node that pauses on a schedule all keep up with steady publishing:
// nothing is wrong. Then a batch acker dies: that is a node failure,
// found later than for a steady node, in proportion to its cadence.
func TestScenarioClassBatchAckersAndPausers(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	w.worker("eu-1").AckEvery(3 * time.Second)
	w.worker("eu-2").AckEvery(5 * time.Second)
	w.worker("eu-3").AckInBatches(80) // at 20/s, a batch every 4s
	w.worker("us-1").PauseEvery(2*time.Second, 10*time.Second)
	w.publish(20)
	w.startEngine(nil)
	// 10 ticks to warm up, then 40 that must be silent; silent from the
	// start, since a batch acker is healthy from the start.
	w.quietFor(50, "batch ackers and a pauser within capacity")
	for id, min := range map[string]int64{"eu-1": 12, "eu-2": 7, "eu-3": 9} {
		if b := w.worker(id).Batches(); b < min {
			t.Fatalf("%s made %d batch acks, want at least %d", id, b, min)
		}
	}
	if p := w.worker("us-1").Pauses(); p < 4 {
		t.Fatalf("us-1 paused %d times", p)
	}

	fault := time.Now()
	w.worker("eu-1").Kill()
	d := w.waitNodeDown(45 * time.Second)
	t.Logf("a 3s batch acker's crash detected %.1fs after the fault", time.Since(fault).Seconds())
	if d.NodeID != "eu-1" || d.Pattern != "node-failure" || d.Level != "critical" {
		t.Fatalf("node.down = %+v; all: %s", d, summary(w.all()))
	}
	w.ticks(3)
	w.expectEvents(1, "want only eu-1's node.down")
}

// One node crashes and comes back, over and over, while publishing goes
// on. Every crash must be either reported or inside an incident of that
// node still open: never a crash nobody hears of. The first crash is a
// node failure, ended by a node.up once the node is back; the second
// within five minutes opens one flapping incident, which holds every later
// crash (it ends only after a minute of calm, which this test does not
// wait for).
func TestScenarioClassFlapping(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 5)
	w.expectEvents(0, "healthy flow")

	const (
		down  = 5 * time.Second
		up    = 6 * time.Second
		times = 6
		// A crash is reported if its node.down comes while the node is down
		// or within this much of its restart: the last tick's sample may
		// already be in flight.
		grace = 2 * time.Second
	)
	type outage struct{ crash, restart time.Time }
	var outs []outage
	flap := w.worker("eu-2")
	var acked int64
	for i := range times {
		// Each time it was up it really worked, or this is not flapping.
		if a := flap.Acks(); a <= acked {
			t.Fatalf("eu-2 acked nothing while up before crash %d", i+1)
		} else {
			acked = a
		}
		crash := time.Now()
		flap.Kill()
		// The fault's own schedule: down this long, then up this long.
		time.Sleep(down)
		restart := time.Now()
		flap.Start()
		outs = append(outs, outage{crash, restart})
		if i < times-1 {
			time.Sleep(up)
		}
	}
	// After its last restart it works again. No ack while it was dead:
	// acked is still its count at the last crash.
	testutil.Eventually(t, 20*time.Second, func() bool { return flap.Acks() > acked },
		"eu-2 acks again after its last restart")
	w.ticks(3)

	all := w.all()
	type incident struct {
		open, closed time.Time // closed zero while open
		pattern      string
		downID       string // of its node.down
	}
	var incs []incident
	byCorr := map[string]int{}
	for _, e := range all {
		switch e.Type {
		case events.TypeNodeDown:
			d := nodeDowns(t, []events.Envelope{e})[0]
			if d.NodeID != "eu-2" {
				t.Fatalf("node.down for %s, only eu-2 flaps: %s", d.NodeID, summary(all))
			}
			if _, dup := byCorr[e.Context.CorrelationID]; dup {
				t.Fatalf("two node.down for one incident: %s", summary(all))
			}
			byCorr[e.Context.CorrelationID] = len(incs)
			incs = append(incs, incident{open: at(e), pattern: d.Pattern, downID: e.Context.ID})
		case events.TypeNodeUp:
			u := decode[events.NodeUp](t, e)
			i, ok := byCorr[e.Context.CorrelationID]
			if u.NodeID != "eu-2" || !ok {
				t.Fatalf("node.up %+v ends no node.down: %s", u, summary(all))
			}
			if !incs[i].closed.IsZero() || u.Pattern != incs[i].pattern || e.Context.CausationID != incs[i].downID {
				t.Fatalf("node.up %+v (context %+v) does not end its %s incident once: %s", u, e.Context, incs[i].pattern, summary(all))
			}
			incs[i].closed = at(e)
		default:
			t.Fatalf("want eu-2's node.down and node.up only: %s", summary(all))
		}
	}

	var timeline strings.Builder
	for i, o := range outs {
		fmt.Fprintf(&timeline, "\n  crash %d: down %s, up %s", i+1, o.crash.Format("15:04:05.000"), o.restart.Format("15:04:05.000"))
	}
	for _, in := range incs {
		closed := "open"
		if !in.closed.IsZero() {
			closed = in.closed.Format("15:04:05.000")
		}
		fmt.Fprintf(&timeline, "\n  incident %s: %s to %s", in.pattern, in.open.Format("15:04:05.000"), closed)
	}
	t.Logf("flapping timeline:%s", timeline.String())

	// Each crash's incident: the one it opened (reported), or else the one
	// open across it (covered); -1 for none.
	reported, covered := make([]int, len(outs)), make([]int, len(outs))
	for i, o := range outs {
		reported[i], covered[i] = -1, -1
		for j, in := range incs {
			if !in.open.Before(o.crash) && !in.open.After(o.restart.Add(grace)) {
				reported[i] = j
				break
			}
		}
		if j := reported[i]; j >= 0 {
			t.Logf("crash %d reported (%s) %.1fs after it", i+1, incs[j].pattern, incs[j].open.Sub(o.crash).Seconds())
			continue
		}
		for j, in := range incs {
			if in.open.Before(o.crash) && (in.closed.IsZero() || !in.closed.Before(o.restart)) {
				covered[i] = j
			}
		}
		if j := covered[i]; j >= 0 {
			t.Logf("crash %d inside the %s incident open since %.1fs before it", i+1, incs[j].pattern, o.crash.Sub(incs[j].open).Seconds())
			continue
		}
		t.Errorf("crash %d (%s) neither reported nor inside an open incident", i+1, o.crash.Format("15:04:05.000"))
	}
	if t.Failed() {
		t.FailNow()
	}

	// Crash 1: a node failure, ended by its node.up once eu-2 was back.
	first := reported[0]
	if first < 0 || incs[first].pattern != "node-failure" {
		t.Fatalf("crash 1 not reported as a node-failure: %s", timeline.String())
	}
	if incs[first].closed.IsZero() {
		t.Fatalf("crash 1's node-failure incident got no node.up: %s", timeline.String())
	}
	// Crash 2, the second stall within five minutes: flapping.
	flapping := reported[1]
	if flapping < 0 || incs[flapping].pattern != "flapping" {
		t.Fatalf("crash 2 not reported as flapping: %s", timeline.String())
	}
	// Crashes 3 on: held in that incident, no other raised.
	for i := 2; i < len(outs); i++ {
		if reported[i] >= 0 || covered[i] != flapping {
			t.Fatalf("crash %d not inside the flapping incident: %s", i+1, timeline.String())
		}
	}
	if len(incs) != 2 {
		t.Fatalf("want a node-failure and a flapping incident only: %s", timeline.String())
	}
}

// One message every 3-7s to fast nodes: most samples show nothing waiting
// and no ack for seconds. Nothing is wrong.
func TestScenarioHealthyTrickle(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	p := w.publishBatches(1, 3*time.Second, 4*time.Second)
	w.startEngine(nil)
	w.quietFor(45, "a trickle")
	n := p.Published()
	if n < 6 {
		t.Fatalf("trickled %d messages", n)
	}
	w.expectAcked(n, 1)
}

// A producer that publishes 50 at once every 5s: a spike of work the
// nodes clear in a moment, then silence. Nothing is wrong.
func TestScenarioHealthyBatchProducer(t *testing.T) {
	t.Parallel()
	w := twoZones(t)
	p := w.publishBatches(50, 5*time.Second, 0)
	w.startEngine(nil)
	w.quietFor(40, "a batch producer")
	b := p.Batches()
	if b < 8 {
		t.Fatalf("published %d batches", b)
	}
	w.expectAcked(50*b, 50)
}

// Every node is a durable push consumer: no pull requests waiting, the
// server pushes. Nothing is wrong.
func TestScenarioHealthyPushConsumers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		w.addPushNode(id, "eu")
	}
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addPushNode(id, "us")
	}
	const rate = 20
	p := w.publish(rate)
	w.startEngine(nil)
	w.quietFor(30, "push consumers")
	// Each node has everything but the last 3s of traffic.
	w.expectAcked(p.Published(), 3*rate)
}

// A consumer is created while the engine runs, starting with the whole
// stream as its backlog, and another is deleted while the engine runs:
// arrivals and departures, not incidents.
func TestScenarioHealthyConsumerLifecycle(t *testing.T) {
	t.Parallel()
	w := steadyTwoZones(t, 5) // 20 msgs/s

	// The late consumer's backlog is at least the stream as it is now.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, stream) // reads the stream's info now
	if err != nil {
		t.Fatal(err)
	}
	backlog := int64(s.CachedInfo().State.Msgs)
	late := w.addNode("eu-4", "eu")
	w.waitNodesSeen("eu-4")
	w.ticks(8)
	if a := late.Acks(); a < backlog {
		t.Fatalf("the late consumer acked %d, short of the %d it started with", a, backlog)
	}
	// Caught up: at most a second's arrivals waiting.
	if n, ok := w.nodeStatus("eu-4"); !ok || n.MessagesWaiting > 20 {
		t.Fatalf("eu-4 in /api/status (listed %v): %+v, want the backlog cleared", ok, n.Node)
	}
	w.deleteNode("us-3")
	w.waitNodeGone("us-3")
	w.quietFor(10, "a consumer created and one deleted")
}

// Nodes that Fetch a batch, process it, ack it and fetch again: acks come
// in steps, one per batch, and between fetches no pull is waiting. Nothing
// is wrong.
func TestScenarioHealthyFetchLoop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		w.addFetchNode(id, "eu", 10, time.Second)
	}
	// At 20/s a batch of 40 fills every 2s.
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addFetchNode(id, "us", 40, 5*time.Second)
	}
	const rate = 20
	p := w.publish(rate)
	w.startEngine(nil)
	w.quietFor(30, "fetch loops")
	// Each node has everything but the last 3s of traffic, or for the
	// big batches the last three batches (a batch takes 2s to fill).
	n := p.Published()
	w.expectAcked(n, max(3*rate, 3*10), "eu-1", "eu-2", "eu-3")
	w.expectAcked(n, max(3*rate, 3*40), "us-1", "us-2", "us-3")
}
