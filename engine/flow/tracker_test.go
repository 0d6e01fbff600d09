package flow

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// fakeConsumer models a JetStream consumer's counters closely enough to
// drive the Tracker: publishing adds to pending, delivery moves pending to
// ack pending, acks remove from ack pending.
type fakeConsumer struct {
	key        NodeKey
	group      string
	created    time.Time
	pending    uint64
	ackPending uint64
	delivered  uint64
	lastAck    time.Time
	hideAck    bool // report no LastAck, as after a server restart
	// lastDelivery is reported when set, as servers that stamp acks do.
	lastDelivery time.Time
	ackNone      bool
	paused       bool
	leader       string
	skew         time.Duration // the server's clock minus the world's
	// floor, when set, is the ack floor reported instead of delivered -
	// ackPending: messages stranded below it were never acked.
	floor uint64
	// waiting is the number of open pull requests it reports.
	waiting uint64
}

func (c *fakeConsumer) deliver(n uint64) {
	n = min(n, c.pending)
	c.pending -= n
	c.ackPending += n
	c.delivered += n
}

func (c *fakeConsumer) ack(n uint64, at time.Time) {
	n = min(n, c.ackPending)
	c.ackPending -= n
	if n > 0 {
		c.lastAck = at
	}
}

func (c *fakeConsumer) sample(at time.Time) ConsumerSample {
	s := ConsumerSample{
		Key:           c.key,
		NodeID:        c.key.Consumer,
		Group:         c.group,
		At:            at.Add(c.skew),
		Created:       c.created,
		NumPending:    c.pending,
		NumAckPending: c.ackPending,
		Delivered:     c.delivered,
		AckFloor:      c.delivered - c.ackPending,
		Leader:        c.leader,
		LastDelivery:  c.lastDelivery,
		AckNone:       c.ackNone,
		Paused:        c.paused,
	}
	if !c.hideAck {
		s.LastAck = c.lastAck
	}
	if c.floor != 0 {
		s.AckFloor = c.floor
	}
	s.NumWaiting = c.waiting
	return s
}

// fixedStall is cfg with a fixed 2s stall threshold: cadence learning never
// completes, so every node is judged by the prior. Tests of what a stall is
// use it; the cadence tests learn.
func fixedStall(cfg Config) Config {
	cfg.StallAfter = 2 * time.Second
	cfg.CadenceSpells = math.MaxInt32
	return cfg
}

// world is a set of streams and consumers stepped one second at a time.
type world struct {
	t         *testing.T
	tr        *Tracker
	now       time.Time
	seq       map[string]uint64
	consumers []*fakeConsumer
	// hidden consumers are left out of snapshots (deleted, or unobserved
	// when listed in unobserved).
	hidden            map[NodeKey]bool
	unobserved        []NodeKey
	unobservedStreams []string
}

func newWorld(t *testing.T, cfg Config) *world {
	return &world{t: t, tr: NewTracker(cfg), now: sec(0), seq: map[string]uint64{}, hidden: map[NodeKey]bool{}}
}

func (w *world) add(stream, consumer, group string) *fakeConsumer {
	c := &fakeConsumer{key: NodeKey{Stream: stream, Consumer: consumer}, group: group, created: w.now.Add(-time.Hour)}
	if _, ok := w.seq[stream]; !ok {
		w.seq[stream] = 0
	}
	w.consumers = append(w.consumers, c)
	return c
}

// publish adds n messages to a stream and so to each of its consumers.
func (w *world) publish(stream string, n uint64) {
	w.seq[stream] += n
	for _, c := range w.consumers {
		if c.key.Stream == stream {
			c.pending += n
		}
	}
}

// flow makes c take up to n messages and ack them at once.
func (w *world) flow(c *fakeConsumer, n uint64) {
	c.deliver(n)
	c.ack(c.ackPending, w.now)
}

func (w *world) snapshot() Snapshot {
	s := Snapshot{At: w.now, Unobserved: w.unobserved, UnobservedStreams: w.unobservedStreams}
	for _, name := range slices.Sorted(mapKeys(w.seq)) {
		s.Streams = append(s.Streams, StreamSample{Name: name, At: w.now, LastSeq: w.seq[name]})
	}
	for _, c := range w.consumers {
		if !w.hidden[c.key] {
			s.Consumers = append(s.Consumers, c.sample(w.now))
		}
	}
	return s
}

func mapKeys(m map[string]uint64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// tick advances one second, runs step to change the world, then updates.
func (w *world) tick(step func()) *State {
	w.now = w.now.Add(time.Second)
	if step != nil {
		step()
	}
	return w.tr.Update(w.snapshot())
}

func (w *world) update() *State { return w.tr.Update(w.snapshot()) }

func nodeOf(t *testing.T, st *State, stream, consumer string) *Node {
	t.Helper()
	for i := range st.Nodes {
		if st.Nodes[i].Key == (NodeKey{Stream: stream, Consumer: consumer}) {
			return &st.Nodes[i]
		}
	}
	t.Fatalf("at %v: node %s/%s not in state (nodes %v)", st.At.Sub(epoch), stream, consumer, st.Nodes)
	return nil
}

func groupOf(t *testing.T, st *State, name string) *Group {
	t.Helper()
	for i := range st.Groups {
		if st.Groups[i].Name == name {
			return &st.Groups[i]
		}
	}
	t.Fatalf("group %q not in state", name)
	return nil
}

// Healthy steady flow: every message is taken and acked within the second
// it arrives. Nothing stalls or lags, and every rate is the flow rate.
func TestSteadyFlow(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "eu")
	b := w.add("ORDERS", "b", "us")
	c := w.add("EVENTS", "c", "")
	// Each keeps a few messages waiting and takes as many as arrive.
	a.pending, b.pending, c.pending = 5, 5, 2
	var st *State
	for range 30 {
		st = w.tick(func() {
			w.publish("ORDERS", 100)
			w.publish("EVENTS", 10)
			w.flow(a, 100)
			w.flow(b, 100)
			w.flow(c, 10)
		})
		for _, n := range st.Nodes {
			if n.Stalled || n.Lagging {
				t.Fatalf("at %v: %s stalled=%v lagging=%v in steady flow", st.At.Sub(epoch), n.ID, n.Stalled, n.Lagging)
			}
		}
	}
	na := nodeOf(t, st, "ORDERS", "a")
	checks := []struct {
		name      string
		got, want float64
	}{
		{"deliveryRate", na.DeliveryRate, 100},
		{"ackRate", na.AckRate, 100},
		{"arrivalRate", na.ArrivalRate, 100},
		{"publishRate", na.PublishRate, 100},
		{"lagGrowthRate", na.LagGrowthRate, 0},
		{"ackRateBaseline", na.AckRateBaseline, 100},
		{"arrivalRateBaseline", na.ArrivalRateBaseline, 100},
		{"secondsSinceLastAck", na.SecondsSinceLastAck, 0},
		{"observedSeconds", na.ObservedSeconds, 29},
		{"c publishRate", nodeOf(t, st, "EVENTS", "c").PublishRate, 10},
		{"system publishRate", st.System.PublishRate, 110},
		{"system publishRateBaseline", st.System.PublishRateBaseline, 110},
		{"system ackRate", st.System.AckRate, 210},
	}
	for _, ch := range checks {
		if !near(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if na.MessagesWaiting != 5 || na.NumPending != 5 || na.AckPending != 0 {
		t.Errorf("a waiting=%d pending=%d ackPending=%d, want 5, 5, 0", na.MessagesWaiting, na.NumPending, na.AckPending)
	}
	want := System{Nodes: 3, JudgedNodes: 3, MessagesWaiting: 5 + 5 + 2, Groups: 2, Streams: 2,
		PublishRate: st.System.PublishRate, PublishRateBaseline: st.System.PublishRateBaseline, AckRate: st.System.AckRate,
		ArrivalRate: st.System.ArrivalRate, ArrivalRateBaseline: st.System.ArrivalRateBaseline, ArrivalRise: 1}
	if st.System != want {
		t.Errorf("system = %+v, want %+v", st.System, want)
	}
	if got := []string{st.Groups[0].Name, st.Groups[1].Name}; len(st.Groups) != 2 || got[0] != "eu" || got[1] != "us" {
		t.Errorf("groups = %+v, want eu, us", st.Groups)
	}
	if g := st.GroupOf(nodeOf(t, st, "EVENTS", "c")); g.Name != "" || g.Size != 0 {
		t.Errorf("ungrouped node sees group %+v, want the zero group", g)
	}
	if len(st.Unobserved) != 0 || len(st.Left) != 0 {
		t.Errorf("unobserved=%v left=%v, want none", st.Unobserved, st.Left)
	}
}

// A node that stops acking while its work keeps arriving is stalled once
// StallAfter has passed since its last ack, and the stall's age grows.
func TestStopsAcking(t *testing.T) {
	for _, hideAck := range []bool{false, true} {
		t.Run(fmt.Sprintf("lastAckKnown=%v", !hideAck), func(t *testing.T) {
			w := newWorld(t, fixedStall(Config{}))
			a := w.add("ORDERS", "a", "")
			a.hideAck = hideAck
			alive := true
			step := func() {
				w.publish("ORDERS", 10)
				if alive {
					w.flow(a, 10)
				}
			}
			for range 5 { // t=1..5, the last ack at t=5
				st := w.tick(step)
				if n := nodeOf(t, st, "ORDERS", "a"); n.Stalled {
					t.Fatalf("stalled at %v while acking", st.At.Sub(epoch))
				}
			}
			alive = false
			// With LastAck the onset is the ack itself. Without it, the
			// last step in which acks rose began at t=4, but the node had
			// nothing waiting at t=5, so its work arrived later: onset t=5
			// either way.
			onset := sec(5)
			// The last ack itself is known to the step: t=5, or t=4 hidden.
			lastAck := 5.0
			if hideAck {
				lastAck = 4
			}
			for i := 6; i <= 12; i++ {
				st := w.tick(step)
				n := nodeOf(t, st, "ORDERS", "a")
				stalledFor := float64(i) - float64(onset.Sub(epoch)/time.Second)
				wantStalled := stalledFor >= 2
				if n.Stalled != wantStalled {
					t.Fatalf("t=%d: stalled=%v, want %v", i, n.Stalled, wantStalled)
				}
				if !near(n.SecondsSinceLastAck, float64(i)-lastAck) {
					t.Errorf("t=%d: secondsSinceLastAck=%v, want %v", i, n.SecondsSinceLastAck, float64(i)-lastAck)
				}
				if !wantStalled {
					if n.StalledSeconds != 0 || !n.StallOnset.IsZero() {
						t.Errorf("t=%d: not stalled but stalledSeconds=%v onset=%v", i, n.StalledSeconds, n.StallOnset)
					}
					continue
				}
				if !n.StallOnset.Equal(onset) || !near(n.StalledSeconds, stalledFor) {
					t.Errorf("t=%d: onset=%v stalledSeconds=%v, want %v and %v",
						i, n.StallOnset.Sub(epoch), n.StalledSeconds, onset.Sub(epoch), stalledFor)
				}
				if n.AckRate < 0 || n.LagGrowthRate <= 0 {
					t.Errorf("t=%d: ackRate=%v lagGrowthRate=%v, want >=0 and growing", i, n.AckRate, n.LagGrowthRate)
				}
			}
			// Once the window holds only the stalled time (t=6..16), the lag
			// grows exactly as fast as work arrives.
			var st *State
			for range 4 {
				st = w.tick(step)
			}
			n := nodeOf(t, st, "ORDERS", "a")
			if !n.Lagging || !near(n.LagGrowthRate, 10) || n.AckRate != 0 || !near(n.ArrivalRate, 10) {
				t.Errorf("window without acks: lagging=%v growth=%v ackRate=%v arrival=%v, want true, 10, 0, 10",
					n.Lagging, n.LagGrowthRate, n.AckRate, n.ArrivalRate)
			}
			if st.System.StalledNodes != 1 || st.System.StalledFraction != 1 {
				t.Errorf("system stalled=%d fraction=%v, want 1, 1", st.System.StalledNodes, st.System.StalledFraction)
			}
		})
	}
}

// A node that keeps taking messages and never acks them (a hung handler,
// a poison message) gets them redelivered: each redelivery raises
// Delivered with NumAckPending unchanged, as an ack would in the estimate.
// Where the server stamps its acks, that is no progress: the node stalls
// and its ackRate falls to 0.
// The same holds for a node that never acked anything, where the server
// stamps deliveries (and so would stamp acks); AckPolicy none takes no
// acks, so there the estimate stands.
func TestRedeliveriesAreNotAcks(t *testing.T) {
	for _, c := range []struct {
		name      string
		ackedOnce bool // the node acked at first, then hung
		ackNone   bool
		stalls    bool
	}{
		{"acked, then hung", true, false, true},
		{"never acked", false, false, true},
		{"ack policy none", false, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, fixedStall(Config{}))
			a := w.add("ORDERS", "a", "")
			a.ackNone = c.ackNone
			hung := !c.ackedOnce
			step := func() {
				w.publish("ORDERS", 10)
				if !hung {
					w.flow(a, 10)
					return
				}
				a.deliver(10)
				a.lastDelivery = w.now
				if c.ackNone {
					a.ackPending = 0 // nothing is held for an ack
					return
				}
				a.delivered += 5 // five of the held messages redelivered
			}
			for range 5 {
				w.tick(step)
			}
			hung = true
			var n *Node
			for i := 6; i <= 17; i++ {
				n = nodeOf(t, w.tick(step), "ORDERS", "a")
				if i >= 9 && n.Stalled != c.stalls {
					t.Fatalf("t=%d: stalled=%v, want %v (ackRate=%v)", i, n.Stalled, c.stalls, n.AckRate)
				}
			}
			if c.stalls && n.AckRate != 0 {
				t.Errorf("after 12s without acks: ackRate=%v, want 0", n.AckRate)
			}
			if !c.stalls && n.AckRate <= 0 {
				t.Errorf("ack policy none: ackRate=%v, want the deliveries", n.AckRate)
			}
			if n.DeliveryRate <= 0 {
				t.Errorf("deliveryRate=%v, want the redeliveries counted as deliveries", n.DeliveryRate)
			}
		})
	}
}

// A consumer with nothing to do is idle, not stalled, however long ago it
// last acked.
func TestIdleNeverStalled(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	w.add("QUIET", "idle", "")
	for i := 1; i <= 30; i++ {
		st := w.tick(nil)
		n := nodeOf(t, st, "QUIET", "idle")
		if n.Stalled || n.Lagging || n.MessagesWaiting != 0 {
			t.Fatalf("t=%d: idle node stalled=%v lagging=%v waiting=%d", i, n.Stalled, n.Lagging, n.MessagesWaiting)
		}
		// Never acked: the age counts from creation, an hour before t=0.
		if want := 3600 + float64(i); !near(n.SecondsSinceLastAck, want) {
			t.Fatalf("t=%d: secondsSinceLastAck=%v, want %v", i, n.SecondsSinceLastAck, want)
		}
	}
}

// A paused consumer's work waits by an operator's choice: it is never
// stalled while paused, and once resumed a stall counts from the resume.
func TestPausedNeverStalled(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "")
	step := func() { w.publish("ORDERS", 10) }
	w.tick(func() { step(); w.flow(a, 10) })
	a.paused = true
	for i := 2; i <= 20; i++ {
		if n := nodeOf(t, w.tick(step), "ORDERS", "a"); n.Stalled {
			t.Fatalf("t=%d: paused node stalled", i)
		}
	}
	a.paused = false // resumed, and still not consuming: stalled 2s later
	for i := 21; i <= 24; i++ {
		n := nodeOf(t, w.tick(step), "ORDERS", "a")
		if want := i >= 22; n.Stalled != want {
			t.Fatalf("t=%d after the resume at t=20: stalled=%v, want %v", i, n.Stalled, want)
		}
		if n.Stalled && !n.StallOnset.Equal(sec(20)) {
			t.Errorf("t=%d: onset %v, want the resume at t=20", i, n.StallOnset.Sub(epoch))
		}
	}
}

// A node first seen with work waiting and no record of progress is not
// stalled until it has been watched for WarmUp, and then its stall is
// counted from when watching began.
func TestWarmUp(t *testing.T) {
	w := newWorld(t, fixedStall(Config{WarmUp: 3 * time.Second}))
	a := w.add("ORDERS", "a", "")
	a.pending = 50
	for i := 0; i <= 5; i++ {
		var st *State
		if i == 0 {
			st = w.update()
		} else {
			st = w.tick(nil)
		}
		n := nodeOf(t, st, "ORDERS", "a")
		if !near(n.ObservedSeconds, float64(i)) {
			t.Errorf("t=%d: observedSeconds=%v, want %d", i, n.ObservedSeconds, i)
		}
		wantStalled := i >= 3
		if n.Stalled != wantStalled {
			t.Fatalf("t=%d: stalled=%v, want %v", i, n.Stalled, wantStalled)
		}
		if wantStalled && (!n.StallOnset.Equal(sec(0)) || !near(n.StalledSeconds, float64(i))) {
			t.Errorf("t=%d: onset=%v stalledSeconds=%v, want t=0 and %d", i, n.StallOnset.Sub(epoch), n.StalledSeconds, i)
		}
	}
}

// After Reset (the engine was blind) no window spans the blind time and
// the stall clock restarts: a stalled node is not stalled again until it has
// been watched for WarmUp, from then on. Baselines survive.
func TestResetMovesStallClock(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "")
	b := w.add("ORDERS", "b", "")
	dead := false
	step := func() {
		w.publish("ORDERS", 10)
		w.flow(b, 10)
		if !dead {
			w.flow(a, 10)
		}
	}
	for range 5 {
		w.tick(step)
	}
	dead = true
	var st *State
	for range 5 {
		st = w.tick(step)
	}
	before := *nodeOf(t, st, "ORDERS", "b")
	if n := nodeOf(t, st, "ORDERS", "a"); !n.Stalled || !n.StallOnset.Equal(sec(5)) {
		t.Fatalf("before reset: a stalled=%v onset=%v, want stalled since t=5", n.Stalled, n.StallOnset.Sub(epoch))
	}
	w.tr.Reset()
	w.now = w.now.Add(30 * time.Second) // blind for a while
	st = w.tick(step)                   // t=41
	na, nb := nodeOf(t, st, "ORDERS", "a"), nodeOf(t, st, "ORDERS", "b")
	if na.Stalled || na.ObservedSeconds != 0 {
		t.Errorf("first tick after reset: a stalled=%v observed=%v, want not stalled, 0", na.Stalled, na.ObservedSeconds)
	}
	if nb.AckRate != 0 || nb.DeliveryRate != 0 || st.System.PublishRate != 0 {
		t.Errorf("first tick after reset: b ackRate=%v deliveryRate=%v publishRate=%v, want 0 (no window)",
			nb.AckRate, nb.DeliveryRate, st.System.PublishRate)
	}
	if nb.AckRateBaseline != before.AckRateBaseline || st.System.PublishRateBaseline == 0 {
		t.Errorf("baselines after reset: b ack %v (was %v), system publish %v, want kept",
			nb.AckRateBaseline, before.AckRateBaseline, st.System.PublishRateBaseline)
	}
	// The last ack is 36s old, but the stall can be vouched for only
	// since watching resumed at t=41.
	if !near(na.SecondsSinceLastAck, 36) {
		t.Errorf("a secondsSinceLastAck=%v, want 36", na.SecondsSinceLastAck)
	}
	for i := 42; i <= 44; i++ {
		st = w.tick(step)
		na = nodeOf(t, st, "ORDERS", "a")
		if want := i >= 44; na.Stalled != want {
			t.Fatalf("t=%d after reset: stalled=%v, want %v", i, na.Stalled, want)
		}
	}
	if !na.StallOnset.Equal(sec(41)) || !near(na.StalledSeconds, 3) {
		t.Errorf("after reset: onset=%v stalledSeconds=%v, want t=41 and 3", na.StallOnset.Sub(epoch), na.StalledSeconds)
	}
	if nb = nodeOf(t, st, "ORDERS", "b"); !near(nb.AckRate, 10) {
		t.Errorf("b ackRate after reset = %v, want 10", nb.AckRate)
	}
}

// A node that could not be read for a tick is listed unobserved, and when it
// is read again its observation restarts; its window is kept.
func TestUnobservedThenBack(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "")
	b := w.add("ORDERS", "b", "")
	step := func() {
		w.publish("ORDERS", 10)
		w.flow(b, 10)
	}
	var st *State
	for range 8 {
		st = w.tick(step)
	}
	if !nodeOf(t, st, "ORDERS", "a").Stalled {
		t.Fatal("a should be stalled before the gap")
	}

	w.hidden[a.key] = true
	w.unobserved = []NodeKey{a.key, a.key, {Stream: "ORDERS", Consumer: "never-seen"}}
	st = w.tick(step)
	if len(st.Nodes) != 1 || st.Nodes[0].ID != "b" {
		t.Errorf("nodes while a is unobserved = %v, want only b", st.Nodes)
	}
	if !slices.Equal(st.Unobserved, []NodeKey{a.key}) || len(st.Left) != 0 {
		t.Errorf("unobserved=%v left=%v, want [a] and none (unknown consumer ignored)", st.Unobserved, st.Left)
	}
	if st.System.Nodes != 1 || st.System.StalledNodes != 0 {
		t.Errorf("system counts the unobserved node: %+v", st.System)
	}

	w.hidden[a.key] = false
	w.unobserved = nil
	st = w.tick(step) // t=10
	na := nodeOf(t, st, "ORDERS", "a")
	if na.Stalled || na.ObservedSeconds != 0 {
		t.Errorf("back from the gap: stalled=%v observed=%v, want watching afresh", na.Stalled, na.ObservedSeconds)
	}
	// The window survives the gap, so the arrival rate is still known.
	if !near(na.ArrivalRate, 10) {
		t.Errorf("back from the gap: arrivalRate=%v, want 10 over the kept window", na.ArrivalRate)
	}
	for range 3 {
		st = w.tick(step)
	}
	if na = nodeOf(t, st, "ORDERS", "a"); !na.Stalled || !na.StallOnset.Equal(sec(10)) {
		t.Errorf("3s after the gap: stalled=%v onset=%v, want stalled since t=10", na.Stalled, na.StallOnset.Sub(epoch))
	}

	// A stream whose consumers cannot be listed makes all its known nodes
	// unobserved, none left.
	w.hidden[a.key], w.hidden[b.key] = true, true
	w.unobservedStreams = []string{"ORDERS"}
	st = w.tick(step)
	if len(st.Nodes) != 0 || !slices.Equal(st.Unobserved, []NodeKey{a.key, b.key}) || len(st.Left) != 0 {
		t.Errorf("stream unobserved: nodes=%v unobserved=%v left=%v, want none, [a b], none", st.Nodes, st.Unobserved, st.Left)
	}
	w.hidden[a.key], w.hidden[b.key] = false, false
	w.unobservedStreams = nil
	st = w.tick(step)
	if nb := nodeOf(t, st, "ORDERS", "b"); nb.ObservedSeconds != 0 || !near(nb.AckRate, 10) {
		t.Errorf("b after its stream came back: observed=%v ackRate=%v, want 0 and 10", nb.ObservedSeconds, nb.AckRate)
	}
}

// A consumer recreated under the same name is watched afresh: window, rates
// and progress are dropped.
func TestConsumerRecreated(t *testing.T) {
	for _, how := range []string{"created changed", "delivered went backwards"} {
		t.Run(how, func(t *testing.T) {
			w := newWorld(t, fixedStall(Config{}))
			a := w.add("ORDERS", "a", "")
			for range 10 {
				w.tick(func() {
					w.publish("ORDERS", 10)
					w.flow(a, 10)
				})
			}
			st := w.tick(func() {
				*a = fakeConsumer{key: a.key, created: a.created, pending: 40}
				if how == "created changed" {
					a.created = w.now
					a.delivered = 500 // not backwards: only Created tells
				}
			})
			n := nodeOf(t, st, "ORDERS", "a")
			if n.ObservedSeconds != 0 || n.AckRate != 0 || n.DeliveryRate != 0 || n.LagGrowthRate != 0 {
				t.Errorf("recreated: observed=%v ackRate=%v deliveryRate=%v growth=%v, want all 0",
					n.ObservedSeconds, n.AckRate, n.DeliveryRate, n.LagGrowthRate)
			}
			for range 3 {
				st = w.tick(nil)
			}
			n = nodeOf(t, st, "ORDERS", "a")
			// The old consumer's acks are not the new one's progress.
			if !n.Stalled || !n.StallOnset.Equal(sec(11)) {
				t.Errorf("recreated and never acking: stalled=%v onset=%v, want stalled since t=11", n.Stalled, n.StallOnset.Sub(epoch))
			}
			wantAge := 3.0 // since the new creation
			if how != "created changed" {
				wantAge = 3600 + 14 // Created unchanged: since then
			}
			if !near(n.SecondsSinceLastAck, wantAge) {
				t.Errorf("secondsSinceLastAck=%v, want %v", n.SecondsSinceLastAck, wantAge)
			}
		})
	}
}

// A node that is neither read nor listed unobserved has left: it is listed
// once, and if it comes back it is a new node.
func TestLeftNodes(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "eu")
	w.add("ORDERS", "b", "eu")
	for range 5 {
		w.tick(func() { w.publish("ORDERS", 1) })
	}
	w.hidden[a.key] = true
	st := w.tick(nil)
	if !slices.Equal(st.Left, []NodeKey{a.key}) || len(st.Unobserved) != 0 {
		t.Errorf("left=%v unobserved=%v, want [a] and none", st.Left, st.Unobserved)
	}
	if st.System.Nodes != 1 || groupOf(t, st, "eu").Size != 1 {
		t.Errorf("after a left: system nodes=%d group size=%d, want 1, 1", st.System.Nodes, groupOf(t, st, "eu").Size)
	}
	if st = w.tick(nil); len(st.Left) != 0 {
		t.Errorf("left listed again: %v", st.Left)
	}
	// Listing a node that left as unobserved does not bring it back.
	w.unobserved = []NodeKey{a.key}
	if st = w.tick(nil); len(st.Unobserved) != 0 {
		t.Errorf("unobserved=%v, want none: a is no longer known", st.Unobserved)
	}
	w.unobserved = nil
	w.hidden[a.key] = false
	st = w.tick(nil)
	if n := nodeOf(t, st, "ORDERS", "a"); n.ObservedSeconds != 0 || n.DeliveryRate != 0 {
		t.Errorf("a came back: observed=%v, want a new node", n.ObservedSeconds)
	}

	// A stream that disappears takes its rate with it.
	delete(w.seq, "ORDERS")
	w.consumers = nil
	st = w.tick(nil)
	if len(st.Left) != 2 || st.System.Streams != 0 || st.System.PublishRate != 0 {
		t.Errorf("stream deleted: left=%v system=%+v", st.Left, st.System)
	}
}

// Group metrics: how many stalled, how close together they stopped, and
// how the rest of the system fares.
func TestGroups(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	var eu, us []*fakeConsumer
	for i := range 3 {
		eu = append(eu, w.add("ORDERS", fmt.Sprintf("eu-%d", i), "eu"))
		us = append(us, w.add("ORDERS", fmt.Sprintf("us-%d", i), "us"))
	}
	loner := w.add("ORDERS", "loner", "")
	stopAt := map[*fakeConsumer]int{eu[0]: 5, eu[1]: 6, eu[2]: 7, us[0]: 6}
	var st *State
	for i := 1; i <= 12; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 10)
			for _, c := range w.consumers {
				if s, ok := stopAt[c]; !ok || i <= s {
					w.flow(c, 10)
				}
			}
		})
	}
	// At t=12 the window is t=2..12: a node that acked until t=s acked
	// (s-2)*10 messages over 10s; every node got 10 new messages a second.
	g := groupOf(t, st, "eu")
	want := Group{Name: "eu", Size: 3, Judged: 3, Stalled: 3, StalledFraction: 1, Lagging: 3, LaggingFraction: 1,
		MessagesWaiting: 70 + 60 + 50, AckRate: 3 + 4 + 5, ArrivalRate: 30,
		StallSpread: 2, OutsideNodes: 4, OutsideJudged: 4, OutsideFlowing: 3, OutsideStalledFraction: 0.25}
	if !sameGroup(*g, want) {
		t.Errorf("eu = %+v\nwant %+v", *g, want)
	}
	g = groupOf(t, st, "us")
	want = Group{Name: "us", Size: 3, Judged: 3, Stalled: 1, StalledFraction: 1.0 / 3, Lagging: 1, LaggingFraction: 1.0 / 3,
		MessagesWaiting: 60, AckRate: 4 + 10 + 10, ArrivalRate: 30,
		StallSpread: 0, OutsideNodes: 4, OutsideJudged: 4, OutsideFlowing: 1, OutsideStalledFraction: 0.75}
	if !sameGroup(*g, want) {
		t.Errorf("us = %+v\nwant %+v", *g, want)
	}
	if st.System.Groups != 2 || st.System.StalledNodes != 4 || !near(st.System.StalledFraction, 4.0/7) {
		t.Errorf("system = %+v, want 2 groups, 4 of 7 stalled", st.System)
	}
	if got := st.GroupOf(nodeOf(t, st, "ORDERS", "eu-1")); got.Name != "eu" {
		t.Errorf("GroupOf(eu-1) = %q", got.Name)
	}
	if got := st.GroupOf(nodeOf(t, st, "ORDERS", loner.key.Consumer)); got.Name != "" {
		t.Errorf("GroupOf(loner) = %q, want the zero group", got.Name)
	}

	// A node that moves to another group counts there from the next tick,
	// and a group left empty disappears.
	for _, c := range us {
		c.group = "ap"
	}
	st = w.tick(nil)
	if len(st.Groups) != 2 || st.Groups[0].Name != "ap" || st.Groups[1].Name != "eu" || st.Groups[0].Size != 3 {
		t.Errorf("after regrouping: %+v, want ap(3), eu", st.Groups)
	}
	for _, c := range us {
		c.group = "us"
	}
	if st = w.tick(nil); groupOf(t, st, "us").Size != 3 || len(st.Groups) != 2 {
		t.Errorf("back to us: %+v", st.Groups)
	}
}

func sameGroup(a, b Group) bool {
	if !near(a.AckRate, b.AckRate) || !near(a.ArrivalRate, b.ArrivalRate) {
		return false
	}
	a.AckRate, a.ArrivalRate = b.AckRate, b.ArrivalRate
	return a == b
}

// The system's publish rate baseline learns the usual rate, and stops
// learning while most nodes lag, so an overload stays visible as a rise.
func TestPublishBaselineFreezes(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	var cs []*fakeConsumer
	for i := range 4 {
		cs = append(cs, w.add("ORDERS", fmt.Sprintf("c%d", i), ""))
	}
	rateNow := uint64(10)
	step := func() {
		w.publish("ORDERS", rateNow)
		for _, c := range cs {
			w.flow(c, 12) // capacity 12/s each
		}
	}
	var st *State
	for range 30 {
		st = w.tick(step)
	}
	if !near(st.System.PublishRateBaseline, 10) {
		t.Fatalf("baseline after steady flow = %v, want 10", st.System.PublishRateBaseline)
	}
	rateNow = 40
	frozenTicks := 0
	prev := st.System.PublishRateBaseline
	for range 30 {
		st = w.tick(step)
		if st.System.LaggingFraction >= 0.5 {
			frozenTicks++
			if st.System.PublishRateBaseline != prev {
				t.Fatalf("at %v: baseline moved %v -> %v while %v of nodes lag",
					st.At.Sub(epoch), prev, st.System.PublishRateBaseline, st.System.LaggingFraction)
			}
		}
		prev = st.System.PublishRateBaseline
	}
	if frozenTicks < 20 {
		t.Fatalf("only %d ticks with most nodes lagging; the overload did not build", frozenTicks)
	}
	if st.System.PublishRate < 1.5*st.System.PublishRateBaseline {
		t.Errorf("publishRate %v vs baseline %v: the overload is no longer a rise", st.System.PublishRate, st.System.PublishRateBaseline)
	}
	if st.System.LaggingNodes != 4 || st.System.LaggingFraction != 1 {
		t.Errorf("system lagging = %d (%v), want all 4", st.System.LaggingNodes, st.System.LaggingFraction)
	}
}

// Baselines move by the half-life rule once mature (learned for two
// half-lives); a 1s window makes each rate one step, so the arithmetic is
// exact.
func TestNodeBaselineHalfLife(t *testing.T) {
	w := newWorld(t, Config{Window: time.Second, BaselineHalfLife: time.Minute})
	a := w.add("ORDERS", "a", "")
	n := uint64(10)
	step := func() {
		w.publish("ORDERS", n)
		w.flow(a, n)
	}
	st := w.update()
	if got := nodeOf(t, st, "ORDERS", "a").AckRateBaseline; got != 0 {
		t.Errorf("baseline before any rate = %v, want 0", got)
	}
	st = w.tick(step)
	if got := nodeOf(t, st, "ORDERS", "a").AckRateBaseline; !near(got, 10) {
		t.Errorf("first rate initialises: baseline = %v, want 10", got)
	}
	for range 125 {
		w.tick(step)
	}
	n = 20
	for range 60 {
		st = w.tick(step)
	}
	na := nodeOf(t, st, "ORDERS", "a")
	if !near(na.AckRate, 20) || !near(na.AckRateBaseline, 15) || !near(na.ArrivalRateBaseline, 15) {
		t.Errorf("one half-life after 10 -> 20: rate=%v ackBaseline=%v arrivalBaseline=%v, want 20, 15, 15",
			na.AckRate, na.AckRateBaseline, na.ArrivalRateBaseline)
	}
}

// A stream whose LastSeq went backwards was recreated: its rate restarts
// rather than going negative or mixing the two.
func TestStreamLastSeqReset(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	w.seq["S"] = 0
	var st *State
	for range 12 {
		st = w.tick(func() { w.seq["S"] += 10 })
	}
	if !near(st.System.PublishRate, 10) {
		t.Fatalf("publishRate = %v, want 10", st.System.PublishRate)
	}
	st = w.tick(func() { w.seq["S"] = 3 })
	if st.System.PublishRate != 0 || st.System.Streams != 1 {
		t.Errorf("after recreate: publishRate=%v streams=%d, want 0 and 1", st.System.PublishRate, st.System.Streams)
	}
	for range 3 {
		st = w.tick(func() { w.seq["S"] += 5 })
	}
	if !near(st.System.PublishRate, 5) {
		t.Errorf("after recreate publishRate = %v, want 5", st.System.PublishRate)
	}
}

// Rates never go negative when a counter drops (messages removed from the
// stream lower NumPending; the acked estimate dips when acks are pending).
func TestClampedRates(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "")
	w.publish("ORDERS", 100)
	w.update()
	st := w.tick(func() { a.pending = 20 }) // 80 expired from the stream
	n := nodeOf(t, st, "ORDERS", "a")
	if n.ArrivalRate != 0 || n.AckRate != 0 || n.LagGrowthRate != -80 {
		t.Errorf("after expiry: arrival=%v ack=%v growth=%v, want 0, 0, -80", n.ArrivalRate, n.AckRate, n.LagGrowthRate)
	}
	st = w.tick(func() {
		a.deliver(20)
		a.ack(5, w.now)
	})
	n = nodeOf(t, st, "ORDERS", "a")
	// Delivered 20 and 15 still pending: acked estimate rose by 5 in this
	// second, by 5 over the two-second window.
	if !near(n.DeliveryRate, 10) || !near(n.AckRate, 2.5) || n.ArrivalRate != 0 {
		t.Errorf("delivery=%v ack=%v arrival=%v, want 10, 2.5, 0", n.DeliveryRate, n.AckRate, n.ArrivalRate)
	}
}

// Advisory counters become rates; the output follows key order even when
// the input does not, and a consumer listed twice counts once.
func TestAdvisoriesOrderAndDuplicates(t *testing.T) {
	tr := NewTracker(Config{})
	mk := func(s, c string, at time.Time, naks uint64) ConsumerSample {
		return ConsumerSample{Key: NodeKey{Stream: s, Consumer: c}, At: at, Naks: naks, MaxDeliveries: naks / 2, Terminated: naks / 5}
	}
	tr.Update(Snapshot{At: sec(0), Consumers: []ConsumerSample{mk("B", "x", sec(0), 0), mk("A", "y", sec(0), 0)}})
	st := tr.Update(Snapshot{At: sec(2), Consumers: []ConsumerSample{
		mk("B", "x", sec(2), 20), mk("A", "z", sec(2), 0), mk("A", "y", sec(2), 10), mk("B", "x", sec(2), 999),
	}})
	var keys []string
	for _, n := range st.Nodes {
		keys = append(keys, n.Key.String())
	}
	if !slices.Equal(keys, []string{"A/y", "A/z", "B/x"}) {
		t.Fatalf("nodes = %v, want sorted and deduplicated", keys)
	}
	x := nodeOf(t, st, "B", "x")
	if x.NakRate != 10 || x.MaxDeliveriesRate != 5 || x.TerminatedRate != 2 || x.ID != "x" {
		t.Errorf("x naks=%v maxDeliveries=%v terminated=%v id=%q, want 10, 5, 2, x", x.NakRate, x.MaxDeliveriesRate, x.TerminatedRate, x.ID)
	}
	if st.System.Nodes != 3 {
		t.Errorf("system nodes = %d, want 3", st.System.Nodes)
	}
	// Returned states are the caller's: a later update leaves them alone.
	kept := slices.Clone(st.Nodes)
	tr.Update(Snapshot{At: sec(3), Consumers: []ConsumerSample{mk("A", "y", sec(3), 50)}})
	if !slices.Equal(kept, st.Nodes) {
		t.Error("a later update changed an earlier state")
	}
}

// Server time that goes backwards (another server now leads the consumer)
// restarts the window instead of producing negative spans.
func TestServerClockBackwards(t *testing.T) {
	tr := NewTracker(Config{})
	k := NodeKey{Stream: "S", Consumer: "c"}
	for i := range 5 {
		tr.Update(Snapshot{At: sec(float64(i)), Consumers: []ConsumerSample{{Key: k, At: sec(float64(i)), NumPending: 5, Delivered: uint64(10 * i)}}})
	}
	st := tr.Update(Snapshot{At: sec(5), Consumers: []ConsumerSample{{Key: k, At: sec(2), NumPending: 5, Delivered: 60}}})
	n := nodeOf(t, st, "S", "c")
	if n.DeliveryRate != 0 || n.ObservedSeconds != 0 || n.Stalled {
		t.Errorf("after clock went back: deliveryRate=%v observed=%v stalled=%v, want 0, 0, false", n.DeliveryRate, n.ObservedSeconds, n.Stalled)
	}
}

func TestConfigDefaults(t *testing.T) {
	got := NewTracker(Config{}).Config()
	want := Config{Interval: time.Second, Window: 10 * time.Second, StallAfter: 10 * time.Second,
		CadenceSpells: 4, CadenceHalfLife: 5 * time.Minute, FlapWindow: 5 * time.Minute, WarmUp: 3 * time.Second,
		FailoverGrace: 10 * time.Second, LaggingSlope: 1, LaggingFloor: 10, BaselineHalfLife: time.Minute}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	custom := Config{Interval: 2 * time.Second, Window: 5 * time.Second, StallAfter: time.Second,
		CadenceSpells: 2, CadenceHalfLife: time.Minute, FlapWindow: time.Minute, WarmUp: time.Second, FailoverGrace: 2 * time.Second,
		LaggingSlope: 3, LaggingFloor: 1, BaselineHalfLife: time.Second}
	if got := NewTracker(custom).Config(); got != custom {
		t.Errorf("custom config became %+v", got)
	}
}

// A dead node that could not be judged for a moment must not look healthy
// once it is read again: for the warm-up after watching restarts it is
// warming (rules hold their judgement), and then it is stalled again. At no
// tick is it both, or neither.
func TestDeadNodeWarmsAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		disrupt func(w *world, a *fakeConsumer)
	}{
		{"one tick listed unobserved", func(w *world, a *fakeConsumer) {
			w.hidden[a.key], w.unobserved = true, []NodeKey{a.key}
			if st := w.tick(nil); !slices.Equal(st.Unobserved, []NodeKey{a.key}) {
				w.t.Fatalf("unobserved = %v, want [a]", st.Unobserved)
			}
			w.hidden[a.key], w.unobserved = false, nil
		}},
		{"one tick on an unreadable stream", func(w *world, a *fakeConsumer) {
			w.hidden[a.key], w.unobservedStreams = true, []string{"ORDERS"}
			if st := w.tick(nil); !slices.Equal(st.Unobserved, []NodeKey{a.key}) {
				w.t.Fatalf("unobserved = %v, want [a]", st.Unobserved)
			}
			w.hidden[a.key], w.unobservedStreams = false, nil
		}},
		{"engine reset after being blind", func(w *world, a *fakeConsumer) {
			w.tr.Reset()
			w.now = w.now.Add(30 * time.Second)
		}},
		{"server clock went back", func(w *world, a *fakeConsumer) {
			a.skew = -5 * time.Second
		}},
		{"consumer recreated", func(w *world, a *fakeConsumer) {
			*a = fakeConsumer{key: a.key, created: w.now.Add(time.Second), pending: 40}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, fixedStall(Config{WarmUp: 3 * time.Second}))
			a := w.add("ORDERS", "a", "")
			step := func() { w.publish("ORDERS", 10) }
			var st *State
			for range 8 {
				st = w.tick(step)
			}
			if n := nodeOf(t, st, "ORDERS", "a"); !n.Stalled || n.Warming {
				t.Fatalf("before: stalled=%v warming=%v, want stalled and judged", n.Stalled, n.Warming)
			}
			tc.disrupt(w, a)
			for k := 0; k <= 3; k++ {
				st = w.tick(step)
				n := nodeOf(t, st, "ORDERS", "a")
				if want := k < 3; n.Warming != want || n.Stalled == want {
					t.Fatalf("%ds after watching restarted: warming=%v stalled=%v, want warming=%v stalled=%v",
						k, n.Warming, n.Stalled, want, !want)
				}
				if !near(n.ObservedSeconds, float64(k)) {
					t.Errorf("%ds after watching restarted: observedSeconds=%v", k, n.ObservedSeconds)
				}
			}
		})
	}
}

// A change of consumer leader is a failover: the node is warming for the
// failover grace and its stall clock starts at the failover. Only a change
// from one leader to another counts, across unreadable ticks too.
func TestFailoverGrace(t *testing.T) {
	from := func(at int, before, after string) func(int) string {
		return func(t int) string {
			if t < at {
				return before
			}
			return after
		}
	}
	tests := []struct {
		name   string
		cfg    Config
		leader func(t int) string
		hidden int // tick at which the node is unobserved; 0 none
		flows  int // the node takes its work up to this tick, acking last at it
		resume int // and again from this tick; 0 never
		// Beyond the first warm-up (ticks 1-3), warming at warm[0] up to
		// but not including warm[1]; stalled from stalled[0] with the
		// onset at stalled[1]; {0, 0} never.
		warm, stalled [2]int
	}{
		{name: "failover: grace, then stalled since the failover",
			leader: from(11, "s1", "s2"), flows: 10, warm: [2]int{11, 21}, stalled: [2]int{21, 11}},
		{name: "failover: clients pull again within the grace",
			leader: from(11, "s1", "s2"), flows: 10, resume: 14, warm: [2]int{11, 21}},
		{name: "first leader read is no failover",
			leader: from(11, "", "s1"), flows: 10, stalled: [2]int{12, 10}},
		{name: "same leader after a leaderless reading",
			leader: func(t int) string { return map[bool]string{true: "", false: "s1"}[t == 11] },
			flows:  10, stalled: [2]int{12, 10}},
		{name: "new leader after a leaderless reading",
			leader: func(t int) string { return map[bool]string{true: "", false: from(12, "s1", "s2")(t)}[t == 11] },
			flows:  10, warm: [2]int{12, 22}, stalled: [2]int{22, 12}},
		{name: "failover while unobserved",
			leader: from(12, "s1", "s2"), hidden: 11, flows: 10, warm: [2]int{12, 22}, stalled: [2]int{22, 12}},
		{name: "unobserved without failover: warm-up only",
			leader: from(0, "", "s1"), hidden: 11, flows: 10, warm: [2]int{12, 15}, stalled: [2]int{15, 12}},
		{name: "a gap does not cut the grace short",
			leader: from(11, "s1", "s2"), hidden: 13, flows: 10, warm: [2]int{11, 21}, stalled: [2]int{21, 14}},
		{name: "grace shorter than the warm-up: the warm-up holds",
			cfg:    Config{FailoverGrace: time.Second},
			leader: from(11, "s1", "s2"), flows: 10, warm: [2]int{11, 14}, stalled: [2]int{14, 11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, fixedStall(tc.cfg))
			a := w.add("ORDERS", "a", "")
			for i := 1; i <= 25; i++ {
				st := w.tick(func() {
					a.leader = tc.leader(i)
					w.hidden[a.key] = i == tc.hidden
					w.unobserved = nil
					if i == tc.hidden {
						w.unobserved = []NodeKey{a.key}
					}
					w.publish("ORDERS", 10)
					if i <= tc.flows || (tc.resume > 0 && i >= tc.resume) {
						w.flow(a, 1000)
					}
				})
				if i == tc.hidden {
					continue
				}
				n := nodeOf(t, st, "ORDERS", "a")
				wantWarm := i < 4 || (i >= tc.warm[0] && i < tc.warm[1])
				wantStalled := tc.stalled[0] > 0 && i >= tc.stalled[0]
				if n.Warming != wantWarm || n.Stalled != wantStalled {
					t.Fatalf("t=%d: warming=%v stalled=%v, want %v and %v", i, n.Warming, n.Stalled, wantWarm, wantStalled)
				}
				if wantStalled && !n.StallOnset.Equal(sec(float64(tc.stalled[1]))) {
					t.Fatalf("t=%d: stall onset t=%v, want t=%d", i, n.StallOnset.Sub(epoch).Seconds(), tc.stalled[1])
				}
				// The window outlives a failover: rates still span it.
				// Acks stopped at t=10; the window reaches back 10s.
				if want := float64(20 - i); i == tc.warm[0] && !near(n.AckRate, want) {
					t.Errorf("t=%d: ackRate=%v over the kept window, want %v", i, n.AckRate, want)
				}
			}
		})
	}
}

// Nodes cut off together on a quiet stream stop at different last acks but
// all fail to take the first message after the cut: their stalls begin at
// the same sample, the last one that found them idle, so a partition shows
// a small spread even at a low publish rate.
func TestQuietStreamStallsLineUp(t *testing.T) {
	w := newWorld(t, fixedStall(Config{}))
	a := w.add("ORDERS", "a", "eu")
	b := w.add("ORDERS", "b", "eu")
	a.hideAck, b.hideAck = true, true
	// One message every other second: a takes it at once, b a second
	// later, so their last acks differ (a at t=5, b at t=6).
	for i := range 6 {
		w.tick(func() {
			if i%2 == 0 {
				w.publish("ORDERS", 1)
				w.flow(a, 1)
			} else {
				w.flow(b, 1)
			}
		})
	}
	// Cut after t=6 (idle at t=5 and t=6); the next message comes at t=7.
	var st *State
	for i := 7; i <= 10; i++ {
		st = w.tick(func() {
			if i%2 == 1 {
				w.publish("ORDERS", 1)
			}
		})
	}
	na, nb := nodeOf(t, st, "ORDERS", "a"), nodeOf(t, st, "ORDERS", "b")
	if !na.Stalled || !nb.Stalled {
		t.Fatalf("stalled a=%v b=%v, want both", na.Stalled, nb.Stalled)
	}
	if !na.StallOnset.Equal(sec(6)) || !nb.StallOnset.Equal(sec(6)) {
		t.Fatalf("onsets a=%v b=%v, want both t=6", na.StallOnset.Sub(epoch), nb.StallOnset.Sub(epoch))
	}
	if g := st.GroupOf(na); g.StallSpread != 0 {
		t.Fatalf("stallSpread = %v, want 0", g.StallSpread)
	}
}
