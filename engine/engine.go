// Package engine is happen's tick loop: every interval it samples JetStream,
// computes flow metrics, evaluates the rules, publishes the resulting events
// on NATS and hands their actions to a dispatcher. It also knows when it is
// blind (its own connection or sampling failed) and then reports nothing
// about nodes it cannot see.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/action"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/lease"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/engine/signals"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything the engine needs besides its connection and rules.
type Config struct {
	Interval      time.Duration // sampling period; default 1s
	SubjectPrefix string        // default happen.events
	Instance      string        // sender is happen-engine/<Instance>; default host name
	Flow          flow.Config   // zero fields take defaults derived from Interval
	Logger        *slog.Logger
	// Dispatcher runs rule actions; default action.Log (runs nothing).
	Dispatcher action.Dispatcher
	// Registry receives the engine's Prometheus metrics; may be nil.
	Registry prometheus.Registerer
	// StateReplicas is the replica count of the state bucket when the
	// engine creates it; default 1. One that exists is used as it is.
	StateReplicas int
	// HistoryStep is the step of each node's lag history (the web view's
	// sparklines, HistoryPoints points); default max(Interval, 5s).
	HistoryStep time.Duration
	// Recorder, if not nil, receives every sample (happen engine --record).
	Recorder Recorder
	// Lease, if not nil, makes the engine one of several electing a leader
	// (ha.go): it speaks and acts only while it holds the lease. Run runs
	// the lease; nothing else may.
	Lease *lease.Lease
	// System, if not nil, is a connection in the system account: the
	// sampler then reads each server's JSZ report, one request per server
	// a tick, instead of listing consumers stream by stream, and the
	// servers' own events (shutdowns, heartbeats, routes) become evidence
	// for the rules (engine/signals).
	System *nats.Conn
	// Members, if not nil, makes the engine one of several sharing the
	// streams (share.go): it samples only those Members assigns it, by
	// listing their consumers even with System set, and
	// while it leads (Lease is then required) evaluates the rules over
	// every member's nodes. Run runs it; nothing else may.
	Members *members.Members
}

// Recorder keeps what the engine sampled, so a replay can run it again.
// Both methods are called on the tick and must not block.
type Recorder interface {
	Record(snap flow.Snapshot)           // a successful sample, before the tracker sees it
	RecordBlind(at time.Time, err error) // a failed sample: the engine is blind
}

// Engine watches one NATS account. Create it with New, run it with Run.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	sampler *sampler.Sampler
	signals *signals.Watcher
	tracker *flow.Tracker
	eval    *rules.Evaluator
	disp    action.Dispatcher
	met     *metrics
	sender  string

	reloads chan reload

	// downs remembers each open incident's down event per node (or for the
	// system), for the up event's causation and the resolve action.
	downs map[string]events.Envelope
	// store keeps open incidents in JetStream across restarts; stateDone
	// says the previous run's incidents were restored (or cannot be).
	store       *incidentStore
	stateDone   bool
	restoreAt   time.Time     // no attempt to reach the store before this
	restoreWait time.Duration // the backoff between attempts

	lastOK     atomic.Int64 // unix nanos of the last successful sample
	blind      bool
	blindSince time.Time
	holdUntil  time.Time // after being blind: no incident changes until windows refill
	view       atomic.Pointer[view]
	recent     eventRing // the last events published, for the API (api.go)
	history    history   // each node's recent lag and the tick bell (history.go)
	lastReload atomic.Pointer[ReloadResult]
	led        bool // this engine led at the last tick (ha.go)
	// savedTimers are the rule timers last written to the state bucket;
	// timersTooMany says the last ones did not fit a message (state.go).
	savedTimers   []rules.Timer
	timersUnknown bool // what the bucket holds could not be read: write the next timers whatever they are
	timersTooMany bool
	share         *share          // nil unless the streams are shared (share.go)
	owned         atomic.Int64    // streams this engine owned at the last tick, when shared
	iso           isolation       // the engine's own server cut from its cluster (isolation.go)
	isoEvent      events.Envelope // the engine.isolated event of the isolation in course

	errMu    sync.Mutex
	errSeen  map[string]time.Time // rate-limits expression error logs
	errSwept time.Time
}

type reload struct {
	set   *rules.Set
	files []string
}

// New returns an engine watching nc with the rules in set.
func New(nc *nats.Conn, set *rules.Set, cfg Config) *Engine {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = events.DefaultPrefix
	}
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
		if cfg.Instance == "" {
			cfg.Instance = nuid.Next()[:8]
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := flow.ForInterval(cfg.Interval)
	if cfg.Flow.Interval == 0 {
		cfg.Flow.Interval = def.Interval
	}
	if cfg.Flow.StallAfter == 0 {
		cfg.Flow.StallAfter = def.StallAfter
	}
	if cfg.Flow.WarmUp == 0 {
		cfg.Flow.WarmUp = def.WarmUp
	}
	if cfg.Flow.FailoverGrace == 0 {
		cfg.Flow.FailoverGrace = def.FailoverGrace
	}
	if cfg.Flow.Window == 0 {
		cfg.Flow.Window = def.Window
	}
	if cfg.Dispatcher == nil {
		cfg.Dispatcher = action.Log{Logger: cfg.Logger}
	}
	scfg := sampler.Config{Timeout: max(time.Second, cfg.Interval), Logger: cfg.Logger, System: cfg.System}
	if cfg.Members != nil {
		scfg.Owns = cfg.Members.Owns
		// A server's JSZ report covers every stream, and cannot be asked
		// for some: each member would make the servers build, and itself
		// decode, the whole report, which at 30,000 consumers saturated
		// the servers. Listing only its own streams' consumers costs each
		// member a share. System access still brings the servers'
		// signals.
		scfg.System = nil
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		nc:      nc,
		sampler: sampler.New(nc, scfg),
		signals: signals.New(cfg.System, nc, signals.Config{Logger: cfg.Logger}),
		tracker: flow.NewTracker(cfg.Flow),
		disp:    cfg.Dispatcher,
		met:     newMetrics(cfg.Registry),
		sender:  "happen-engine/" + cfg.Instance,
		reloads: make(chan reload, 1),
		downs:   map[string]events.Envelope{},
		errSeen: map[string]time.Time{},
	}
	e.eval = rules.NewEvaluator(set, e.evalOpts()...)
	e.led = e.leading()
	e.met.rulesLoaded.Set(float64(len(set.Rules)))
	registerLeaseMetrics(cfg.Registry, cfg.Lease)
	if cfg.Members != nil {
		// jetstream.New fails only on bad options; it is given none.
		js, _ := jetstream.New(nc)
		e.share = newShare(js, cfg.Members, &e.cfg)
		registerShareMetrics(cfg.Registry, cfg.Members, func() float64 { return float64(e.owned.Load()) })
	}
	e.view.Store(&view{reason: "starting"})
	e.iso.noMetaAfter = max(noMetaAfter, 3*cfg.Interval)
	return e
}

// Run samples every interval until ctx ends. It returns nil on a clean stop.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.signals.Start(ctx); err != nil {
		return fmt.Errorf("listen to server signals: %w", err)
	}
	if err := e.sampler.Start(ctx); err != nil {
		return fmt.Errorf("start sampling: %w", err)
	}
	defer e.sampler.Stop()
	lctx, stopLease := context.WithCancel(ctx)
	waitLease := e.followLease(lctx)
	defer waitLease() // gives the lease up for a standby to take at once
	defer stopLease()
	if e.share != nil {
		waitMembers := e.followMembers(lctx)
		defer waitMembers() // leaves the members for the others to take its streams at once
		defer e.share.reset()
	}
	stopAPI := e.startAPI() // answers happen status and happen events until Run returns
	defer stopAPI()
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		e.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reload queues a new rule set; it takes effect at the next tick, and
// rules.reloaded is published then.
func (e *Engine) Reload(set *rules.Set) {
	r := reload{set: set, files: set.Files}
	for {
		select {
		case e.reloads <- r:
			return
		default:
		}
		select { // a newer set replaces one not yet applied
		case <-e.reloads:
		default:
		}
	}
}

// Reject publishes rules.rejected for a refused ruleset change. err is
// usually rules.Errors; the previous rules stay in force.
func (e *Engine) Reject(err error) {
	e.met.reloads.WithLabelValues("rejected").Inc()
	e.lastReload.Store(rejected(err))
	byFile := map[string][]string{}
	var order []string
	var diags rules.Errors
	if errors.As(err, &diags) {
		for _, d := range diags {
			if _, ok := byFile[d.Pos.File]; !ok {
				order = append(order, d.Pos.File)
			}
			byFile[d.Pos.File] = append(byFile[d.Pos.File], d.Error())
		}
	} else {
		order = []string{""}
		byFile[""] = []string{err.Error()}
	}
	for _, f := range order {
		e.log.Error("ruleset change refused; previous rules stay in force", "file", f, "errors", byFile[f])
		e.publish(events.TypeRulesRejected, events.RulesRejected{File: f, Errors: byFile[f]}, "", "")
	}
}

// Tick runs one sample-evaluate-emit cycle. Run calls it every interval;
// it is exported for tests that drive time themselves.
func (e *Engine) Tick(ctx context.Context) {
	defer e.afterTick()
	start := time.Now()
	// A sample may take longer than one interval (the ticker then skips a
	// beat); only one that takes much longer makes the engine blind.
	sctx, cancel := context.WithTimeout(ctx, max(2*e.cfg.Interval, 2*time.Second))
	snap, err := e.sampler.Sample(sctx)
	cancel()
	e.met.sampleSeconds.Observe(time.Since(start).Seconds())
	if err == nil && !e.nc.IsConnected() {
		err = errors.New("not connected to NATS")
	}
	if iso := e.checkIsolation(ctx, start, &snap, err); iso != nil && e.nc.IsConnected() {
		err = iso // what it sampled, if anything, is only its own side's
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.met.samples.WithLabelValues("error").Inc()
		if e.cfg.Recorder != nil {
			e.cfg.Recorder.RecordBlind(start, err)
		}
		e.goBlind(err)
		return
	}
	snap.Signals = e.signals.Read()
	if e.cfg.Recorder != nil {
		e.cfg.Recorder.Record(snap)
	}
	e.met.samples.WithLabelValues("ok").Inc()
	if e.blind {
		e.blind = false
		e.met.blind.Set(0)
		e.eval.DropPending()
		// A blind spell shorter than a stall leaves the windows valid: rates
		// span the gap. A longer one may hide anything, so start afresh.
		if gap := e.blindGap(); gap >= e.blindReset() {
			e.tracker.Reset()
			e.holdUntil = snap.At.Add(e.cfg.Flow.WarmUp + e.blindReset())
			e.log.Info("sampling resumed; holding incidents while flow windows refill", "blind", gap.Round(time.Millisecond), "hold", e.holdUntil.Sub(snap.At))
		} else {
			e.log.Info("sampling resumed", "blind", gap.Round(time.Millisecond))
		}
	}
	e.lastOK.Store(time.Now().UnixNano())

	st := e.tracker.Update(snap)
	now := snap.At
	lead := e.checkRole(now)
	seen := &snap // what exists, for restoring incidents
	if e.share != nil {
		if snap.Share != nil {
			e.owned.Store(int64(len(snap.Share.Owned)))
		}
		// The leader publishes its own share too: whoever leads next
		// reads it at once instead of waiting for it to be sampled again.
		own := e.publishShare(ctx, st, &snap)
		if lead {
			all, unread, ok := e.combine(ctx, own, &snap, now)
			if ok {
				st = all
				seen = &flow.Snapshot{At: now, Unobserved: all.Unobserved, UnobservedStreams: unread}
			} else {
				lead = false // gathering the members' summaries: judge nothing yet
			}
		}
	}
	flow.Annotate(st, &snap.Signals, now)
	if lead {
		e.restore(ctx, now, st, seen)
	}

	select {
	case r := <-e.reloads:
		e.applyReload(ctx, r, now, st)
	default:
	}
	if !lead {
		// A standby keeps its windows full and says nothing.
		e.met.observe(st)
		e.view.Store(e.newView(st))
		return
	}

	var trs []rules.Transition
	if now.Before(e.holdUntil) {
		trs = e.eval.Leave(now, st.Left)
	} else {
		trs = e.eval.Eval(now, st)
		e.met.evaluations.Add(float64(e.evalCount(st)))
	}
	e.emit(ctx, trs, st)
	e.saveTimers(ctx, now)
	e.met.observe(st)
	e.view.Store(e.newView(st))
}

// blindReset is the longest blind spell after which flow windows are kept:
// two samples missed, or 2s, whichever is longer. A learned node can stall
// within one interval, so a longer gap may hide anything; after it, every
// window starts afresh and incidents hold for a warm-up and this much more.
func (e *Engine) blindReset() time.Duration {
	return flow.BlindReset(e.cfg.Interval)
}

// blindGap is how long the engine has not seen JetStream: since its last
// good sample, not since it noticed, which is a sample timeout later.
func (e *Engine) blindGap() time.Duration {
	if ok := e.lastOK.Load(); ok != 0 {
		return time.Since(time.Unix(0, ok))
	}
	return time.Since(e.blindSince)
}

func (e *Engine) goBlind(err error) {
	if !e.blind {
		e.log.Warn("engine is blind: cannot sample JetStream; reporting nothing about nodes until it can", "error", err)
		e.blindSince = time.Now()
	}
	e.blind = true
	e.met.blind.Set(1)
	v := *e.view.Load()
	v.blind, v.reason = true, err.Error()
	e.view.Store(&v)
}

func (e *Engine) applyReload(ctx context.Context, r reload, now time.Time, st *flow.State) {
	trs := e.eval.Swap(r.set, now)
	e.emit(ctx, trs, st)
	e.met.rulesLoaded.Set(float64(len(r.set.Rules)))
	e.met.reloads.WithLabelValues("applied").Inc()
	e.lastReload.Store(&ReloadResult{At: time.Now(), Result: "applied", Files: r.files, Rules: len(r.set.Rules)})
	e.log.Info("rules reloaded", "files", r.files, "rules", len(r.set.Rules))
	e.publish(events.TypeRulesReloaded, events.RulesReloaded{Files: r.files, Rules: len(r.set.Rules)}, "", "")
}

// emit publishes one event per transition and dispatches the rule's actions.
func (e *Engine) emit(ctx context.Context, trs []rules.Transition, st *flow.State) {
	if len(trs) == 0 || !e.leading() {
		return
	}
	defer e.persist(ctx, trs)
	for _, tr := range trs {
		inc := tr.Incident
		r := inc.Rule
		downKey := inc.ID + "|" + tr.Node.String()
		var env events.Envelope
		var key string
		switch {
		case tr.Kind == rules.Fire && r.Emit == events.TypeNodeDown:
			n := st.Node(tr.Node)
			key = st.NodeID(tr.Node)
			p := events.NodeDown{
				NodeID: key, Pattern: r.Pattern, Rule: r.Name, Level: r.Level,
				Stream: tr.Node.Stream, Consumer: tr.Node.Consumer,
				AffectedNodes: st.NodeIDs(inc.Nodes),
			}
			if n != nil {
				p.Group = n.Group
				p.LagMetrics = lagMetrics(n)
			}
			env = e.publish(events.TypeNodeDown, p, inc.ID, "")
			e.downs[downKey] = env
		case tr.Kind == rules.Fire:
			key = "system"
			sys := st.System
			env = e.publish(events.TypeSystemDown, events.SystemDown{
				Level: r.Level, Pattern: r.Pattern, Rule: r.Name,
				AffectedNodes: st.NodeIDs(inc.Nodes),
				Metrics: events.SystemMetrics{
					Nodes: sys.Nodes, LaggingNodes: sys.LaggingNodes, LaggingFraction: sys.LaggingFraction,
					MessagesWaiting: sys.MessagesWaiting, PublishRate: sys.PublishRate,
					PublishRateBaseline: sys.PublishRateBaseline,
				},
			}, inc.ID, "")
			e.downs[downKey] = env
		default:
			down := e.downs[downKey]
			delete(e.downs, downKey)
			secs := tr.At.Sub(inc.Since).Seconds()
			if r.Emit == events.TypeNodeDown {
				key = st.NodeID(tr.Node)
				if down.Type != "" {
					var p events.NodeDown
					if down.Decode(&p) == nil {
						key = p.NodeID // the id it went down with, even if it left
					}
				}
				env = e.publish(events.TypeNodeUp, events.NodeUp{
					NodeID: key, Pattern: r.Pattern, Rule: r.Name, DownSeconds: secs, Reason: tr.Reason,
				}, inc.ID, down.Context.ID)
			} else {
				key = "system"
				env = e.publish(events.TypeSystemUp, events.SystemUp{
					Pattern: r.Pattern, Rule: r.Name, DownSeconds: secs, Reason: tr.Reason,
				}, inc.ID, down.Context.ID)
			}
			if len(r.Actions) > 0 && env.Context.ID != "" { // not when the lease ran out mid-tick
				e.disp.Dispatch(ctx, action.Job{Event: env, Down: down, Resolve: true, Rule: r.Name, Key: key, Actions: r.Actions})
			}
			continue
		}
		if len(r.Actions) > 0 && env.Context.ID != "" {
			e.disp.Dispatch(ctx, action.Job{Event: env, Down: env, Rule: r.Name, Key: key, Actions: r.Actions})
		}
	}
}

// publish sends one event on <prefix>.<type> and returns its envelope.
// NATS buffers while reconnecting; a failure is logged and counted, never
// fatal: the incident state stays right either way.
func (e *Engine) publish(typ string, payload any, correlation, causation string) events.Envelope {
	raw, err := json.Marshal(payload)
	if err != nil {
		// Payloads are our own plain structs; this cannot fail on valid data.
		e.log.Error("encode event", "type", typ, "error", err)
	}
	if !e.leading() || (e.cfg.Lease != nil && !e.nc.IsConnected()) {
		// A standby, or a leader whose lease ran out mid-tick: the
		// leader speaks. A leader cut off would have its event buffered
		// and delivered on reconnecting, perhaps after another engine
		// took over: it says nothing until it is back.
		return events.Envelope{Type: typ, Payload: raw}
	}
	env := events.Envelope{
		Type:    typ,
		Payload: raw,
		Context: events.Context{
			ID:            nuid.Next(),
			Timestamp:     time.Now().UnixMilli(),
			Sender:        e.sender,
			CausationID:   causation,
			CorrelationID: correlation,
		},
	}
	data, _ := json.Marshal(env)
	subj := e.cfg.SubjectPrefix + "." + typ
	if err := e.nc.Publish(subj, data); err != nil {
		e.met.publishErrors.Inc()
		e.log.Error("publish event", "subject", subj, "error", err)
	}
	e.recent.add(env)
	e.met.events.WithLabelValues(typ).Inc()
	e.log.Info("event", "type", typ, "id", env.Context.ID, "correlationId", correlation, "payload", string(raw))
	return env
}

// PublishEvent publishes an event raised outside the tick loop (such as
// action.failed from the plugin manager).
func (e *Engine) PublishEvent(typ string, payload any, correlation, causation string) events.Envelope {
	return e.publish(typ, payload, correlation, causation)
}

func (e *Engine) ruleError(r *rules.Rule, subject string, err error) {
	e.met.ruleErrors.WithLabelValues(r.Name).Inc()
	key := r.Name + "|" + subject
	e.errMu.Lock()
	last, seen := e.errSeen[key]
	now := time.Now()
	if !seen || now.Sub(last) > time.Minute {
		e.errSeen[key] = now
	}
	// Subjects come and go (consumers churn): once a minute, forget what
	// has been quiet for the rate limit's span, so the map stays bounded.
	if now.Sub(e.errSwept) > time.Minute {
		e.errSwept = now
		for k, at := range e.errSeen {
			if now.Sub(at) > time.Minute {
				delete(e.errSeen, k)
			}
		}
	}
	e.errMu.Unlock()
	if !seen || now.Sub(last) > time.Minute {
		e.log.Error("rule expression failed; the alert keeps its state", "rule", r.Name, "at", r.Pos.String(), "subject", subject, "error", err)
	}
}

func (e *Engine) evalCount(st *flow.State) int {
	n := 0
	for _, r := range e.eval.Set().Rules {
		switch r.Scope {
		case rules.ScopeNode:
			n += len(st.Nodes)
		case rules.ScopeGroup:
			n += len(st.Groups)
		default:
			n++
		}
	}
	return n
}

func lagMetrics(n *flow.Node) events.LagMetrics {
	return events.LagMetrics{
		MessagesWaiting: n.MessagesWaiting, NumPending: n.NumPending, AckPending: n.AckPending,
		Redelivered: n.Redelivered, DeliveryRate: n.DeliveryRate, AckRate: n.AckRate,
		LagGrowthRate: n.LagGrowthRate, WaitingPulls: n.WaitingPulls, SecondsSinceLastAck: n.SecondsSinceLastAck,
		TimeLagSeconds: n.TimeLagSeconds, TimeLagEstimated: n.TimeLagEstimated, SecondsToDrain: n.SecondsToDrain,
		MessagesLost: n.MessagesLost, SecondsToLoss: n.SecondsToLoss,
	}
}
