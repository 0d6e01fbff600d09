package flow

import (
	"slices"
	"testing"
	"time"
)

func TestStallThreshold(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name       string
		learnedMax float64
		learned    bool
		present    bool
		prior      time.Duration
		floor      time.Duration
		ackWait    time.Duration
		want       float64
	}{
		{"unlearned: the prior", 0, false, false, 10 * s, s, 0, 10},
		{"unlearned: the prior, capped by AckWait", 0, false, false, 10 * s, s, 5 * s, 5},
		{"unlearned, yet a slower rhythm already seen", 7, false, false, 10 * s, s, 0, 14},
		{"busy node gone: the floor of one interval", 0.05, true, false, 10 * s, s, 0, 1},
		{"busy node still asking for messages: the prior", 0.05, true, true, 10 * s, s, 0, 10},
		{"still asking, with a stuck handler's short AckWait", 0.05, true, true, 10 * s, s, time.Second, 1},
		{"batch acker: twice its longest spell", 4.5, true, false, 10 * s, s, 0, 9},
		{"slow batch acker asking: its own cadence beyond the prior", 8, true, true, 10 * s, s, 0, 16},
		{"a spell past the default AckWait is capped at 30s", 40, true, false, 10 * s, s, 0, 30},
		{"a long AckWait lets a slow rhythm be", 40, true, false, 10 * s, s, time.Minute, 60},
		{"AckWait under the floor: the floor", 0.05, true, false, 10 * s, 2 * s, time.Second, 2},
	}
	for _, tc := range tests {
		if got := stallThreshold(tc.learnedMax, tc.learned, tc.present, tc.prior, tc.floor, tc.ackWait); !near(got, tc.want) {
			t.Errorf("%s: stallThreshold = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsIdle(t *testing.T) {
	tests := []struct {
		name     string
		waiting  int
		at       time.Time
		progress time.Time
		want     bool
	}{
		{"work waiting is never idle", 5, sec(100), time.Time{}, false},
		{"never progressed, nothing waiting", 0, sec(100), time.Time{}, true},
		{"acked within its threshold: flowing", 0, sec(100), sec(99.5), false},
		{"acked longer ago than its threshold", 0, sec(100), sec(97), true},
	}
	for _, tc := range tests {
		if got := isIdle(tc.waiting, tc.at, tc.progress, 2); got != tc.want {
			t.Errorf("%s: isIdle = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A busy node acks between every two samples: its cadence is learned by
// the end of its warm-up, and from then on it is stalled one interval after
// its last ack, not after the prior.
func TestBusyNodeLearnsQuickly(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	alive := true
	var st *State
	for i := 1; i <= 6; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 20)
			if alive {
				w.flow(a, 15) // always some work waiting at a sample
			}
		})
	}
	n := nodeOf(t, st, "ORDERS", "a")
	if !n.CadenceLearned || !near(n.StallThreshold, 1) || n.Stalled || n.Idle {
		t.Fatalf("busy node after warm-up: learned=%v threshold=%v stalled=%v idle=%v, want true, 1, false, false",
			n.CadenceLearned, n.StallThreshold, n.Stalled, n.Idle)
	}
	alive = false
	st = w.tick(func() { w.publish("ORDERS", 20) })
	if n := nodeOf(t, st, "ORDERS", "a"); !n.Stalled || n.RecentStalls != 1 {
		t.Fatalf("one interval after its last ack: stalled=%v recentStalls=%v, want true, 1", n.Stalled, n.RecentStalls)
	}
}

// A batch acker holds its messages and acks them all every five seconds.
// It is never stalled while it keeps that rhythm, neither while its
// cadence is being learned nor after; once it stops, it is stalled after
// about twice its cadence.
func TestBatchAckerIsNotStalled(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	const period = 5
	stopAt := 60
	var st *State
	for i := 1; i <= stopAt; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 10)
			a.deliver(10)
			if i%period == 0 {
				a.ack(a.ackPending, w.now)
			}
		})
		if n := nodeOf(t, st, "ORDERS", "a"); n.Stalled {
			t.Fatalf("t=%d: a batch acker keeping its rhythm is stalled (threshold %v)", i, n.StallThreshold)
		}
	}
	n := nodeOf(t, st, "ORDERS", "a")
	if !n.CadenceLearned || n.StallThreshold < period || n.StallThreshold > 3*period {
		t.Fatalf("learned=%v threshold=%v, want learned and about twice the %ds cadence", n.CadenceLearned, n.StallThreshold, period)
	}
	thr := n.StallThreshold
	for i := stopAt + 1; i <= stopAt+20; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 10)
			a.deliver(10)
		})
		n := nodeOf(t, st, "ORDERS", "a")
		silent := float64(i - stopAt)
		if want := silent >= thr; n.Stalled != want {
			t.Fatalf("%vs after its last batch: stalled=%v, want %v (threshold %v)", silent, n.Stalled, want, thr)
		}
	}
}

// A node that pauses now and then (GC, a flush) and then finishes what it
// held is stalled the first time if it was gone meanwhile (no pull request
// open: its client's buffer was full), as nothing it had shown said it
// pauses; the pause is learned, and the next one is no stall. One that kept
// asking for messages throughout is given the cautious prior even the
// first time.
func TestPauseIsLearned(t *testing.T) {
	for _, present := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffer full", true: "still asking"}[present], func(t *testing.T) {
			w := newWorld(t, Config{})
			a := w.add("ORDERS", "a", "")
			paused := func(i int) bool { return (i >= 10 && i < 13) || (i >= 30 && i < 33) }
			stalledAt := map[int]bool{}
			for i := 1; i <= 40; i++ {
				st := w.tick(func() {
					w.publish("ORDERS", 20)
					a.deliver(20)
					a.lastDelivery = w.now
					a.waiting = 0
					if !paused(i) || present {
						a.waiting = 1
					}
					if !paused(i) {
						a.ack(a.ackPending-5, w.now) // all it held but the newest few
					}
				})
				if nodeOf(t, st, "ORDERS", "a").Stalled {
					stalledAt[i] = true
				}
			}
			if first := stalledAt[11] || stalledAt[12]; first == present {
				t.Errorf("first, unforeseen pause stalled=%v, want %v: %v", first, !present, stalledAt)
			}
			for i := 30; i <= 34; i++ {
				if stalledAt[i] {
					t.Errorf("t=%d: stalled during a pause like one already seen", i)
				}
			}
		})
	}
}

// A node that crashes and comes back leaves the messages it held stranded
// (its ack floor stays behind until AckWait redelivers them): its outage is
// not learned as a pause, so the next crash is a stall again, and both
// count as recent stalls.
func TestCrashIsNotLearned(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	down := func(i int) bool { return (i >= 10 && i < 14) || (i >= 25 && i < 29) }
	var stalledAt []int
	var st *State
	for i := 1; i <= 35; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 20)
			switch {
			case down(i):
				// It took a batch just before dying and never acks it.
				if i == 10 || i == 25 {
					a.deliver(20)
					a.lastDelivery = w.now
				}
				if i == 10 { // the first stranded message holds the floor
					a.floor = a.delivered - a.ackPending
				}
			default:
				// The new client acks what it takes; the old batch stays
				// stranded below the floor.
				a.deliver(20)
				a.lastDelivery = w.now
				stranded := uint64(0)
				if i >= 14 {
					stranded = 20
				}
				if i >= 29 {
					stranded = 40
				}
				a.ack(a.ackPending-stranded, w.now)
			}
		})
		if nodeOf(t, st, "ORDERS", "a").Stalled {
			stalledAt = append(stalledAt, i)
		}
	}
	if len(stalledAt) == 0 || stalledAt[len(stalledAt)-1] < 25 {
		t.Fatalf("stalled at %v: the second crash went unseen", stalledAt)
	}
	if n := nodeOf(t, st, "ORDERS", "a"); n.RecentStalls != 2 || n.SecondsSinceStall <= 0 {
		t.Errorf("recentStalls=%d secondsSinceStall=%v, want 2 and > 0", n.RecentStalls, n.SecondsSinceStall)
	}
}

// Idle members are neither healthy nor failed: when the busy nodes of a
// group stall together, the group is fully stalled whatever its idle
// members show, and the system's shares leave them out too.
func TestIdleNodesAreNotJudged(t *testing.T) {
	w := newWorld(t, Config{})
	var busy []*fakeConsumer
	for _, c := range []string{"a", "b"} {
		busy = append(busy, w.add("ORDERS", c, "eu"))
	}
	w.add("DLQ", "dlq", "eu") // a stream nobody publishes to
	other := w.add("ORDERS", "c", "us")
	var st *State
	for i := 1; i <= 15; i++ {
		st = w.tick(func() {
			w.publish("ORDERS", 20)
			w.flow(other, 15)
			if i <= 8 {
				for _, c := range busy {
					w.flow(c, 15)
				}
			}
		})
	}
	if n := nodeOf(t, st, "DLQ", "dlq"); !n.Idle || n.Stalled {
		t.Fatalf("dlq idle=%v stalled=%v, want idle", n.Idle, n.Stalled)
	}
	g := groupOf(t, st, "eu")
	if g.Size != 3 || g.Judged != 2 || g.Idle != 1 || g.Stalled != 2 || g.StalledFraction != 1 || g.OutsideFlowing != 1 {
		t.Fatalf("eu = %+v, want size 3, 2 judged, 1 idle, both judged stalled, one flowing outside", *g)
	}
	if s := st.System; s.JudgedNodes != 3 || s.IdleNodes != 1 || !near(s.StalledFraction, 2.0/3) {
		t.Fatalf("system = %+v, want 3 judged, 1 idle, 2/3 stalled", s)
	}
}

// A stall seen on both sides of a gap in watching (the node unobserved, or
// the engine blind) is one stall, not two: a dead node is not flapping.
func TestStallAcrossGapIsOne(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	var st *State
	for i := 1; i <= 30; i++ {
		if i == 15 {
			w.tr.Reset()
		}
		st = w.tick(func() {
			w.publish("ORDERS", 20)
			if i <= 6 {
				w.flow(a, 15)
			}
		})
	}
	if n := nodeOf(t, st, "ORDERS", "a"); !n.Stalled || n.RecentStalls != 1 {
		t.Fatalf("stalled=%v recentStalls=%d, want one stall throughout", n.Stalled, n.RecentStalls)
	}
}

// Messages stranded by a crash are redelivered after AckWait and acked by
// the new client, which passes the ack floor at last: that must not teach
// the engine that the crash was a pause of the node's, or a later crash
// would go unseen.
func TestRedeliveryDoesNotTeachTheCrash(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	down := func(i int) bool { return (i >= 10 && i < 16) || (i >= 60 && i < 66) }
	var stalledAt []int
	for i := 1; i <= 70; i++ {
		st := w.tick(func() {
			w.publish("ORDERS", 20)
			switch {
			case down(i):
				if i == 10 || i == 60 { // it took a batch and died
					a.deliver(20)
					a.lastDelivery = w.now
					if a.floor == 0 {
						a.floor = a.delivered - a.ackPending
					}
				}
			default:
				a.deliver(20)
				a.lastDelivery = w.now
				stranded := uint64(20)
				if i >= 45 { // redelivered after AckWait, and acked
					stranded, a.floor = 0, 0
				}
				if i >= 66 {
					stranded = 20
				}
				a.ack(a.ackPending-stranded, w.now)
			}
		})
		if nodeOf(t, st, "ORDERS", "a").Stalled {
			stalledAt = append(stalledAt, i)
		}
	}
	if !slices.Contains(stalledAt, 62) {
		t.Fatalf("stalled at %v: the second crash was not seen within two intervals", stalledAt)
	}
}

// A dead node seen afresh (a new engine, after a restart) is never judged
// healthy on the strength of a silence that began before the engine could
// see it: it is warming until its threshold has passed, then stalled.
func TestDeadNodeSeenAfreshIsNeverHealthy(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.add("ORDERS", "a", "")
	a.lastAck = w.now.Add(-time.Minute) // it died a minute ago
	a.pending = 500
	for i := 1; i <= 20; i++ {
		st := w.tick(func() { w.publish("ORDERS", 20) })
		if n := nodeOf(t, st, "ORDERS", "a"); !n.Warming && !n.Stalled {
			t.Fatalf("t=%d: a dead node judged neither warming nor stalled (threshold %v)", i, n.StallThreshold)
		}
	}
}
