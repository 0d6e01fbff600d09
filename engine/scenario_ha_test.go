package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/action"
	"github.com/happen-dev/happen/engine/lease"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
)

// haEngine is one of several engines electing a leader.
type haEngine struct {
	id     string
	eng    *engine.Engine
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// startHA runs an engine with a lease of period on its own connection.
func (w *world) startHA(id string, period time.Duration) *haEngine {
	w.t.Helper()
	return w.startHADispatch(id, period, nil)
}

// startHADispatch is startHA with the engine's actions going to disp.
func (w *world) startHADispatch(id string, period time.Duration, disp action.Dispatcher) *haEngine {
	w.t.Helper()
	return w.startHAWith(id, period, defaultSet(w.t), disp)
}

// startHAWith is startHA with its own rules and dispatcher.
func (w *world) startHAWith(id string, period time.Duration, set *rules.Set, disp action.Dispatcher) *haEngine {
	w.t.Helper()
	return w.startElecting(id, period, set, disp, false)
}

// startElecting runs an engine with a lease of period on its own
// connection; with share, it also shares the streams, its membership of
// the same period.
func (w *world) startElecting(id string, period time.Duration, set *rules.Set, disp action.Dispatcher, share bool) *haEngine {
	w.t.Helper()
	nc := testutil.Connect(w.t, w.url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	log := slog.New(slog.NewTextHandler(testWriter{w.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if os.Getenv("HAPPEN_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("engine", id)
	}
	js := testutil.JetStream(w.t, nc)
	cfg := engine.Config{Interval: time.Second, Instance: id, Logger: log, Dispatcher: disp,
		Lease: lease.New(js, lease.Config{Identity: id, Period: period, Logger: log})}
	if share {
		cfg.Members = members.New(js, members.Config{Identity: id, Period: period, Logger: log})
	}
	h := &haEngine{id: id, nc: nc, done: make(chan struct{})}
	h.eng = engine.New(nc, set, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		if err := h.eng.Run(ctx); err != nil {
			w.t.Errorf("engine %s: %v", id, err)
		}
	}()
	w.t.Cleanup(func() { cancel(); <-h.done })
	return h
}

// kill stops an engine as SIGKILL would: its connection goes without a
// word, and nothing it does after reaches the server.
func (h *haEngine) kill() {
	h.nc.Close()
	h.cancel()
	<-h.done
}

// haWorld is a server with four nodes in two groups, eu and us, and work
// arriving for them at 20 msgs/s.
func haWorld(t *testing.T) *world {
	w := newWorld(t)
	for _, id := range []string{"eu-1", "eu-2", "us-1", "us-2"} {
		w.addNode(id, id[:2])
	}
	w.publish(20)
	return w
}

// waitLeader waits until exactly one of hs leads and sees the world's
// four nodes, and makes the world's tick helpers follow it.
func (w *world) waitLeader(hs []*haEngine) *haEngine {
	w.t.Helper()
	var leader *haEngine
	testutil.Eventually(w.t, 15*time.Second, func() bool {
		var n int
		n, leader = leaderOf(hs)
		return n == 1 && len(leader.eng.Status().Nodes) == 4
	}, "one leader seeing every node")
	w.eng = leader.eng
	return leader
}

func leaderOf(hs []*haEngine) (n int, leader *haEngine) {
	for _, h := range hs {
		if h.eng.Status().Role == engine.RoleLeader {
			n++
			leader = h
		}
	}
	return n, leader
}

// Three engines, one leader. A node fails; the leader reports it and is
// killed mid-incident. Another takes over within two lease periods and
// says nothing more of the node until it is back, then reports its
// recovery under the same correlationId. Only leaders ever speak.
func TestScenarioHATakeoverMidIncident(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	w := haWorld(t)
	hs := []*haEngine{w.startHA("a", period), w.startHA("b", period), w.startHA("c", period)}
	first := w.waitLeader(hs)
	for _, h := range hs {
		testutil.Eventually(t, 5*time.Second, func() bool { return h.eng.Status().Leader == first.id },
			"engine %s names %s as leader", h.id, first.id)
	}
	w.quietFor(5, "healthy flow under three engines")

	w.worker("eu-1").Kill()
	down := w.waitNodeDown(20 * time.Second)
	if down.NodeID != "eu-1" {
		t.Fatalf("node.down for %s, want eu-1: %s", down.NodeID, summary(w.all()))
	}
	downs := w.ofType(events.TypeNodeDown)
	corr := downs[0].Context.CorrelationID

	killed := time.Now()
	first.kill()
	rest := []*haEngine{}
	for _, h := range hs {
		if h != first {
			rest = append(rest, h)
		}
	}
	var second *haEngine
	testutil.Eventually(t, 4*period, func() bool {
		var n int
		n, second = leaderOf(rest)
		return n == 1
	}, "a new leader")
	took := time.Since(killed)
	t.Logf("takeover %v after the leader was killed (lease %v)", took.Round(10*time.Millisecond), period)
	if took > 2*period+period/2 {
		t.Fatalf("takeover took %v, want within about two lease periods (%v)", took, 2*period)
	}
	w.eng = second.eng
	w.ticks(5)
	if n := len(w.ofType(events.TypeNodeDown)); n != 1 {
		t.Fatalf("after the takeover %d node.down, want the one the first leader sent: %s", n, summary(w.all()))
	}

	w.worker("eu-1").Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(w.ofType(events.TypeNodeUp)) > 0 }, "node.up for eu-1")
	up := w.ofType(events.TypeNodeUp)[0]
	if up.Context.CorrelationID != corr || up.Context.Sender != "happen-engine/"+second.id {
		t.Fatalf("node.up %+v, want correlationId %s from the new leader %s", up.Context, corr, second.id)
	}
	w.ticks(3)
	for _, e := range w.all() {
		switch e.Type {
		case events.TypeNodeDown:
			if e.Context.Sender != "happen-engine/"+first.id {
				t.Fatalf("node.down from %s, not the leader of the time: %s", e.Context.Sender, summary(w.all()))
			}
		case events.TypeNodeUp:
		default:
			t.Fatalf("unexpected %s: %s", e.Type, summary(w.all()))
		}
	}
}

// The leader's own connection is cut. It cannot renew, so it stops leading
// before its lease runs out, and only then does the other engine take
// over (at no moment do two engines lead). A node that fails meanwhile is
// reported once, by the new leader; the old one, back, stands by.
func TestScenarioHALeaderCutOff(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	w := haWorld(t)
	proxy := testutil.NewProxy(t, w.srv.Addr().String())
	viaProxy := w.url
	w.url = "nats://" + proxy.Addr()
	a := w.startHA("a", period)
	w.url = viaProxy
	testutil.Eventually(t, 15*time.Second, func() bool { return a.eng.Status().Role == engine.RoleLeader }, "a leads")
	b := w.startHA("b", period)
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := b.eng.Status()
		return st.Leader == "a" && len(st.Nodes) == 4
	}, "b stands by, naming a")
	w.eng = a.eng

	// Watch the roles from here on: never two leaders.
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if a.eng.Status().Role == engine.RoleLeader && b.eng.Status().Role == engine.RoleLeader {
				t.Errorf("a and b lead at once")
				return
			}
		}
	}()
	defer func() { close(stop); <-watched }()

	cut := time.Now()
	proxy.Cut()
	testutil.Eventually(t, 2*period, func() bool { return a.eng.Status().Role == engine.RoleStandby }, "a steps down")
	if d := time.Since(cut); d > period {
		t.Fatalf("a stepped down %v after the cut, after its lease (%v) ran out", d, period)
	}
	testutil.Eventually(t, 3*period, func() bool { return b.eng.Status().Role == engine.RoleLeader }, "b takes over")
	t.Logf("b took over %v after a was cut off (lease %v)", time.Since(cut).Round(10*time.Millisecond), period)
	w.eng = b.eng

	w.worker("eu-1").Kill()
	down := w.waitNodeDown(20 * time.Second)
	proxy.Heal()
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := a.eng.Status()
		return a.nc.IsConnected() && st.Role == engine.RoleStandby && st.Leader == "b"
	}, "a back, standing by for b")
	w.worker("eu-1").Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(w.ofType(events.TypeNodeUp)) > 0 }, "node.up for eu-1")
	w.ticks(3)
	for _, e := range w.all() {
		if e.Context.Sender != "happen-engine/b" {
			t.Fatalf("%s from %s: only b led since the cut: %s", e.Type, e.Context.Sender, summary(w.all()))
		}
	}
	if down.NodeID != "eu-1" || len(w.ofType(events.TypeNodeDown)) != 1 || len(w.ofType(events.TypeNodeUp)) != 1 {
		t.Fatalf("want one node.down and one node.up for eu-1: %s", summary(w.all()))
	}
}

// jobCounter counts the action jobs of every engine, by incident and kind.
type jobCounter struct {
	mu    sync.Mutex
	fired map[string]int // by correlationId
	ended map[string]int
}

func (c *jobCounter) Dispatch(_ context.Context, job action.Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if job.Resolve {
		c.ended[job.Down.Context.CorrelationID]++
	} else {
		c.fired[job.Event.Context.CorrelationID]++
	}
}

func (c *jobCounter) counts(corr string) (fired, ended int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired[corr], c.ended[corr]
}

// The leader is killed 20 times in a row while one incident is open, a
// fresh engine joining each time so three take part. The incident is
// reported once, its actions run once, and its recovery comes once, from
// whichever engine leads then; every takeover is within two lease periods.
func TestScenarioHATwentyKillsMidIncident(t *testing.T) {
	t.Parallel()
	const period = time.Second
	w := haWorld(t)
	jobs := &jobCounter{fired: map[string]int{}, ended: map[string]int{}}
	hs := []*haEngine{w.startHADispatch("e0", period, jobs), w.startHADispatch("e1", period, jobs), w.startHADispatch("e2", period, jobs)}
	leader := w.waitLeader(hs)
	w.ticks(3)

	w.worker("eu-1").Kill()
	down := w.waitNodeDown(20 * time.Second)
	corr := w.ofType(events.TypeNodeDown)[0].Context.CorrelationID
	if down.NodeID != "eu-1" {
		t.Fatalf("node.down for %s: %s", down.NodeID, summary(w.all()))
	}

	var longest time.Duration
	for i := range 20 {
		killed := time.Now()
		leader.kill()
		var live []*haEngine
		for _, h := range hs {
			if h != leader {
				live = append(live, h)
			}
		}
		hs = append(live, w.startHADispatch(fmt.Sprintf("e%d", i+3), period, jobs))
		testutil.Eventually(t, 5*period, func() bool {
			var n int
			n, leader = leaderOf(hs)
			return n == 1
		}, "a leader after kill %d", i+1)
		longest = max(longest, time.Since(killed))
		w.eng = leader.eng
		if n := len(w.ofType(events.TypeNodeDown)); n != 1 {
			t.Fatalf("after kill %d: %d node.down: %s", i+1, n, summary(w.all()))
		}
	}
	t.Logf("20 takeovers, the longest %v (lease %v)", longest.Round(10*time.Millisecond), period)
	if longest > 2*period+period/2 {
		t.Fatalf("a takeover took %v, want within two lease periods (%v)", longest, 2*period)
	}

	w.worker("eu-1").Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(w.ofType(events.TypeNodeUp)) > 0 }, "node.up for eu-1")
	w.ticks(3)
	ups := w.ofType(events.TypeNodeUp)
	if len(ups) != 1 || ups[0].Context.CorrelationID != corr || len(w.ofType(events.TypeNodeDown)) != 1 {
		t.Fatalf("want one node.down and one node.up under %s: %s", corr, summary(w.all()))
	}
	if fired, ended := jobs.counts(corr); fired != 1 || ended != 1 {
		t.Fatalf("the incident's actions ran %d times on fire and %d on resolve, want once each", fired, ended)
	}
}

// A rule that waits 16s before it fires: the leader is killed halfway
// through. The new leader takes the pending alert up where the old one
// left it and fires when the old one would have, not 16s after taking
// over.
func TestScenarioHAPendingForCarriesOver(t *testing.T) {
	t.Parallel()
	const period = time.Second
	const wait = 16 * time.Second
	set := slowFailure(t)
	w := haWorld(t)
	hs := []*haEngine{w.startHAWith("a", period, set, nil), w.startHAWith("b", period, set, nil)}
	leader := w.waitLeader(hs)
	w.ticks(10) // past the warm-up, cadences learned

	w.worker("eu-1").Kill()
	killedNode := time.Now()
	// Stalled within a few seconds; the alert is pending from then.
	testutil.Eventually(t, 20*time.Second, func() bool {
		n, ok := w.nodeStatus("eu-1")
		return ok && n.Stalled
	}, "eu-1 stalled")
	stalled := time.Now()
	w.ticks(int(wait / time.Second / 2))
	leader.kill()
	testutil.Eventually(t, 5*period, func() bool {
		n, l := leaderOf(hs)
		return n == 1 && l != leader
	}, "a new leader")
	down := w.waitNodeDown(2 * wait)
	fired := at(w.ofType(events.TypeNodeDown)[0])
	t.Logf("eu-1 stalled %.1fs after its worker was killed; node.down %.1fs after the stall (for: %v)",
		stalled.Sub(killedNode).Seconds(), fired.Sub(stalled).Seconds(), wait)
	if down.NodeID != "eu-1" {
		t.Fatalf("node.down for %s: %s", down.NodeID, summary(w.all()))
	}
	// Starting afresh at the takeover would fire at least wait/2 + wait
	// after the stall; carried over, about wait after it.
	if d := fired.Sub(stalled); d > wait+wait/3 {
		t.Fatalf("node.down %v after the stall: the pending alert started over at the takeover", d)
	}
}

// slowFailure is a ruleset whose one rule waits 16s before it fires.
func slowFailure(t *testing.T) *rules.Set {
	t.Helper()
	rs, err := rules.Parse("slow.yaml", []byte(`
version: 1
name: slow
rules:
  - name: slow-failure
    when: node.stalled && node.arrivalRate > 0
    resolve: "!node.stalled"
    for: 16s
    emit: node.down
    pattern: node-failure
    level: critical
`), rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// A pending alert carried over a takeover ends on the new leader (the node
// recovers before its for): the new leader clears the timers in the state
// bucket, so a later takeover does not restore the stale one, which would
// fire at once.
func TestScenarioHATimersClearedAfterTakeover(t *testing.T) {
	t.Parallel()
	const period = time.Second
	set := slowFailure(t)
	w := haWorld(t)
	hs := []*haEngine{w.startHAWith("a", period, set, nil), w.startHAWith("b", period, set, nil)}
	leader := w.waitLeader(hs)
	w.ticks(10)

	kv, err := w.js.KeyValue(context.Background(), engine.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	timers := func() string {
		e, err := kv.Get(context.Background(), "timers")
		if err != nil {
			return ""
		}
		return string(e.Value())
	}
	w.worker("eu-1").Kill()
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(timers(), `"pending"`) },
		"the pending alert saved in the state bucket")
	leader.kill()
	testutil.Eventually(t, 5*period, func() bool {
		n, l := leaderOf(hs)
		return n == 1 && l != leader
	}, "a new leader")
	w.worker("eu-1").Start()
	testutil.Eventually(t, 20*time.Second, func() bool { return !strings.Contains(timers(), `"pending"`) },
		"the ended alert cleared from the state bucket by the new leader; it holds %s", timers())
	if evs := w.all(); len(evs) != 0 {
		t.Fatalf("the alert never fired, yet: %s", summary(evs))
	}
}
