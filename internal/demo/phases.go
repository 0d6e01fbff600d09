package demo

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/sdk/events"
)

// Bounds of every wait at the 1s interval, stretched for longer ones. Each
// is several times what the workload's numbers (workload.go) lead to
// expect, so a loaded machine does not fail the demo, while a fault that
// goes undetected still ends it in bounded time.
const (
	warmUpTimeout  = 60 * time.Second // expected: ~5s, the engine's warm-up and four samples
	detectTimeout  = 60 * time.Second // expected: 2-3s for a stall, ~14s for a bottleneck, ~8s for overload
	recoverTimeout = 60 * time.Second // expected: 3-15s, a rule's keepFiringFor after the flow is back
	settleTimeout  = 60 * time.Second // expected: a few seconds of draining backlog
)

// phase is one fault: how to inject it, what the built-in rules should
// say about it, and how to undo it.
type phase struct {
	fault, target string
	banner        string // what is being done, printed as the fault is injected
	restoreBanner string
	expect        expectation
	inject        func(context.Context) error
	restore       func(context.Context) error
}

// phases are the four faults, in the order they are shown.
func (d *demo) phases() []phase {
	w := d.workers
	us := d.groupWorkers("us")
	return []phase{
		{
			fault: "node failure", target: "orders-eu-2",
			banner:        "node failure: stopping orders-eu-2's worker; its work keeps arriving",
			restoreBanner: "recovery: starting orders-eu-2's worker again",
			expect:        expectation{typ: events.TypeNodeDown, pattern: "node-failure", nodes: []string{"orders-eu-2"}},
			inject:        func(context.Context) error { w["orders-eu-2"].Kill(); return nil },
			restore:       w["orders-eu-2"].Start,
		},
		{
			fault: "partition", target: "group us",
			banner:        fmt.Sprintf("partition: cutting every worker of group us (%s) at once; group eu keeps flowing", d.idsOf("us")),
			restoreBanner: "recovery: group us reconnects",
			expect:        expectation{typ: events.TypeNodeDown, pattern: "partition", nodes: d.groupIDs("us")},
			inject:        func(context.Context) error { killTogether(us); return nil },
			restore: func(ctx context.Context) error {
				for _, wk := range us {
					if err := wk.Start(ctx); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			fault: "bottleneck", target: "orders-eu-1",
			banner: fmt.Sprintf("bottleneck: orders-eu-1 now handles %d msgs/s of the %d arriving; its lag climbs",
				bottleneckCapacity, steadyRate),
			restoreBanner: fmt.Sprintf("recovery: orders-eu-1 back to %d msgs/s; it drains its backlog", capacity),
			expect:        expectation{typ: events.TypeNodeDown, pattern: "bottleneck", nodes: []string{"orders-eu-1"}},
			inject:        func(context.Context) error { w["orders-eu-1"].SetCapacity(bottleneckCapacity); return nil },
			restore:       func(context.Context) error { w["orders-eu-1"].SetCapacity(capacity); return nil },
		},
		{
			fault: "overload", target: "every node",
			banner: fmt.Sprintf("overload: publishing %d msgs/s to every node, above the %d msgs/s each handles",
				overloadRate, capacity),
			restoreBanner: fmt.Sprintf("recovery: publishing back to %d msgs/s a node; the backlogs drain", steadyRate),
			expect:        expectation{typ: events.TypeSystemDown, pattern: "overload"},
			inject:        func(context.Context) error { d.pub.SetRate(overloadRate); return nil },
			restore:       func(context.Context) error { d.pub.SetRate(steadyRate); return nil },
		},
	}
}

// play warms up, runs every phase and fills res. It returns an error only
// when the run was stopped or could not go on.
func (d *demo) play(res *Result) error {
	ctx := d.ctx
	d.printf("\nwarming up: waiting until happen sees every node and has learned its rhythm...\n")
	start := time.Now()
	ok, err := d.settle(ctx, d.scale(warmUpTimeout))
	if err != nil {
		return d.stopped(err)
	}
	if !ok {
		return fmt.Errorf("warm-up: the engine did not judge all %d nodes healthy within %v", len(d.nodes), d.scale(warmUpTimeout))
	}
	res.WarmUp = time.Since(start)
	d.printf("ready after %s: %d nodes judged healthy, no incidents\n", secs(res.WarmUp), len(d.nodes))
	for _, p := range d.phases() {
		r, err := d.runPhase(ctx, p)
		res.Phases = append(res.Phases, r)
		if err != nil {
			return d.stopped(err)
		}
	}
	return nil
}

// stopped names why the run ended early: the caller stopped it, or the
// engine or the web server failed.
func (d *demo) stopped(err error) error {
	switch {
	case d.parent.Err() != nil:
		return fmt.Errorf("demo interrupted: %w", context.Cause(d.parent))
	case d.ctx.Err() != nil:
		return context.Cause(d.ctx)
	}
	return err
}

// runPhase injects one fault, waits for its detection, recovers, waits for
// the up events and for the flow to settle.
func (d *demo) runPhase(ctx context.Context, p phase) (PhaseResult, error) {
	r := PhaseResult{Fault: p.fault, Target: p.target, Expected: p.expect.String()}
	d.printf("\n%s %s\n", d.mark("→", cyan), p.banner)
	from := d.log.len()
	injected := time.Now()
	if err := p.inject(ctx); err != nil {
		return r, fmt.Errorf("%s: inject: %w", p.fault, err)
	}
	var det detection
	_, err := d.log.wait(ctx, from, d.scale(detectTimeout), func(evs []seenEvent) bool {
		det = p.expect.detect(evs)
		return det.ok
	})
	if err != nil {
		return r, err
	}
	r.Detected = det.ok
	if det.ok {
		r.TimeToDetect = det.at.Sub(injected)
		d.printf("  %s detected in %s\n", d.mark("✓", green), secs(r.TimeToDetect))
	} else {
		d.printf("  %s no %s within %v\n", d.mark("✗", red), p.expect, d.scale(detectTimeout))
	}

	d.printf("%s %s\n", d.mark("←", cyan), p.restoreBanner)
	restored := time.Now()
	if err := p.restore(ctx); err != nil {
		return r, fmt.Errorf("%s: recover: %w", p.fault, err)
	}
	if det.ok {
		var at time.Time
		ok, err := d.log.wait(ctx, from, d.scale(recoverTimeout), func(evs []seenEvent) bool {
			var ok bool
			at, ok = ended(det.downs, evs)
			return ok
		})
		if err != nil {
			return r, err
		}
		r.Recovered = ok
		if ok {
			r.TimeToRecover = at.Sub(restored)
			d.printf("  %s recovered in %s\n", d.mark("✓", green), secs(r.TimeToRecover))
		} else {
			d.printf("  %s no up event within %v\n", d.mark("✗", red), d.scale(recoverTimeout))
		}
	}

	start := time.Now()
	ok, err := d.settle(ctx, d.scale(settleTimeout))
	if err != nil {
		return r, err
	}
	r.Settled = ok
	if ok {
		d.printf("  flow healthy again %s later\n", secs(time.Since(start)))
	} else {
		d.printf("  %s flow not healthy within %v; going on\n", d.mark("✗", red), d.scale(settleTimeout))
	}
	// What was expected is left out only when all of it came: otherwise
	// the part that came shows what was seen instead.
	var found []seenEvent
	if det.ok {
		found = det.downs
	}
	r.Unexpected = p.expect.unexpected(d.log.since(from), found)
	return r, nil
}

// settle waits until the engine judges every node of the demo healthy
// (learned, not warming, idle, stalled or lagging, its backlog gone) with
// no incident open, at two ticks in a row. False if that took longer than
// timeout.
func (d *demo) settle(ctx context.Context, timeout time.Duration) (bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(max(50*time.Millisecond, d.cfg.Interval/4))
	defer poll.Stop()
	var okAt time.Time // the tick found healthy, if the last one was
	for {
		st := d.eng.Status()
		switch {
		case !d.healthy(st):
			okAt = time.Time{}
		case okAt.IsZero():
			okAt = st.At
		case st.At.After(okAt):
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			return false, nil
		case <-poll.C:
		}
	}
}

// healthy is the state between faults: every demo node seen and judged,
// keeping up, and nothing open.
func (d *demo) healthy(st *engine.Status) bool {
	if !st.Healthy || st.Blind || len(st.Incidents) > 0 {
		return false
	}
	seen := 0
	for _, n := range st.Nodes {
		if !slices.ContainsFunc(d.nodes, func(x node) bool { return x.id == n.ID }) {
			continue
		}
		seen++
		// A node keeping up has about one interval's arrivals waiting at
		// most; more is a backlog still draining.
		if n.Warming || n.Idle || n.Stalled || n.Lagging || !n.CadenceLearned ||
			float64(n.MessagesWaiting) > steadyRate*max(1, d.cfg.Interval.Seconds()) {
			return false
		}
	}
	return seen == len(d.nodes)
}

// scale stretches a wait stated for the 1s interval to the one in use.
func (d *demo) scale(t time.Duration) time.Duration {
	if f := d.cfg.Interval.Seconds(); f > 1 {
		return time.Duration(float64(t) * f)
	}
	return t
}

func (d *demo) groupIDs(group string) []string {
	var ids []string
	for _, n := range d.nodes {
		if n.group == group {
			ids = append(ids, n.id)
		}
	}
	return ids
}

func (d *demo) groupWorkers(group string) []*worker {
	var ws []*worker
	for _, id := range d.groupIDs(group) {
		ws = append(ws, d.workers[id])
	}
	return ws
}

// killTogether cuts every worker's connection in the same instant, as a
// network partition does, and only then cleans up after them.
func killTogether(ws []*worker) {
	runs := make([]*workerRun, 0, len(ws))
	for _, w := range ws {
		if r := w.detach(); r != nil {
			runs = append(runs, r)
		}
	}
	for _, r := range runs {
		r.nc.Close()
	}
	for _, r := range runs {
		r.cancel()
		r.cc.Stop()
		waitClosed(r.cc)
	}
}

// expectation is what the built-in rules should emit for a fault: a down
// event of a type and pattern, for each of some nodes (one incident), or
// once for the system.
type expectation struct {
	typ     string
	pattern string
	nodes   []string // node.down: every one of these, one incident
}

func (x expectation) String() string {
	s := x.typ + " " + x.pattern
	switch len(x.nodes) {
	case 0:
	case 1:
		s += " (" + x.nodes[0] + ")"
	default:
		s += " (" + idRange(x.nodes) + ", one incident)"
	}
	return s
}

// matches reports whether e is one of the expected down events.
func (x expectation) matches(e seenEvent) bool {
	if e.env.Type != x.typ || e.pattern != x.pattern {
		return false
	}
	return x.typ == events.TypeSystemDown || slices.Contains(x.nodes, e.nodeID)
}

// detection is how far the expected events have arrived.
type detection struct {
	ok    bool
	at    time.Time   // when the last of them arrived
	downs []seenEvent // the expected down events seen, in order
}

// detect looks for the expected down events among evs: all of them, and
// for several nodes, one incident (one correlation id).
func (x expectation) detect(evs []seenEvent) detection {
	var det detection
	got := map[string]bool{}
	for _, e := range evs {
		if !x.matches(e) || got[e.nodeID] {
			continue
		}
		got[e.nodeID] = true
		det.downs = append(det.downs, e)
		det.at = e.at
	}
	want := max(1, len(x.nodes))
	if len(det.downs) < want {
		return det
	}
	for _, e := range det.downs {
		if e.env.Context.CorrelationID != det.downs[0].env.Context.CorrelationID {
			return det // several incidents: not what was expected
		}
	}
	det.ok = true
	return det
}

// unexpected describes every down event among evs other than the expected
// ones found (downs), e.g. "node.down flapping orders-eu-2".
func (x expectation) unexpected(evs, downs []seenEvent) []string {
	var out []string
	for _, e := range evs {
		if e.env.Type != events.TypeNodeDown && e.env.Type != events.TypeSystemDown {
			continue
		}
		if slices.ContainsFunc(downs, func(d seenEvent) bool { return d.env.Context.ID == e.env.Context.ID }) {
			continue
		}
		out = append(out, e.describe())
	}
	return out
}

// ended reports whether every down has been ended by its up event (same
// incident, same node), and when the last of them arrived.
func ended(downs, evs []seenEvent) (time.Time, bool) {
	var last time.Time
	for _, dn := range downs {
		upType := events.TypeNodeUp
		if dn.env.Type == events.TypeSystemDown {
			upType = events.TypeSystemUp
		}
		i := slices.IndexFunc(evs, func(e seenEvent) bool {
			return e.env.Type == upType && e.env.Context.CorrelationID == dn.env.Context.CorrelationID && e.nodeID == dn.nodeID
		})
		if i < 0 {
			return time.Time{}, false
		}
		if evs[i].at.After(last) {
			last = evs[i].at
		}
	}
	return last, true
}

// seenEvent is one event as the demo received it.
type seenEvent struct {
	env             events.Envelope
	at              time.Time // when it arrived
	nodeID, pattern string    // from its payload; nodeID empty for the system
}

func newSeenEvent(env events.Envelope, at time.Time) seenEvent {
	var p struct {
		NodeID  string `json:"nodeId"`
		Pattern string `json:"pattern"`
	}
	_ = env.Decode(&p) // an odd payload matches nothing, and is still shown
	return seenEvent{env: env, at: at, nodeID: p.NodeID, pattern: p.Pattern}
}

func (e seenEvent) describe() string {
	s := e.env.Type + " " + e.pattern
	if e.nodeID != "" {
		s += " " + e.nodeID
	}
	return s
}

// eventLog is every event received, in order, for the phases to wait on.
type eventLog struct {
	mu   sync.Mutex
	evs  []seenEvent
	wake chan struct{} // closed and replaced at every event
}

func newEventLog() *eventLog { return &eventLog{wake: make(chan struct{})} }

func (l *eventLog) add(e seenEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	close(l.wake)
	l.wake = make(chan struct{})
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// since returns the events from index from on.
func (l *eventLog) since(from int) []seenEvent {
	evs, _ := l.sinceAndWake(from)
	return evs
}

func (l *eventLog) sinceAndWake(from int) ([]seenEvent, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs[min(from, len(l.evs)):]), l.wake
}

// wait calls done with the events from index from on, again at every new
// one, until it returns true (true, nil), timeout passes (false, nil) or
// ctx ends (false, ctx.Err()).
func (l *eventLog) wait(ctx context.Context, from int, timeout time.Duration, done func([]seenEvent) bool) (bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		evs, wake := l.sinceAndWake(from)
		if done(evs) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
			return false, nil
		case <-wake:
		}
	}
}

// secs renders a duration as seconds with one decimal.
func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
