package engine

import (
	"context"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/lease"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// Several engines against one system elect a leader through a KV lease
// (engine/lease); Config.Lease makes this engine take part. A standby
// samples and keeps its flow windows full, so it judges at once when it
// takes over, but it evaluates no rule, emits no event, runs no action and
// writes no incident: everything it would say is the leader's to say. On
// taking over it restores the open incidents from the state bucket, as
// after a restart, so an incident goes on under its correlation id, with no
// second down and its up still to come, and the rules' timers: a pending
// alert fires when it would have on the old leader, a cooldown holds. On losing the lead it forgets its
// incidents, which are the new leader's now.

// Roles an engine reports (Status.Role).
const (
	RoleLeader  = string(lease.Leader)
	RoleStandby = string(lease.Standby)
)

// leading reports whether this engine may speak: always without a lease.
func (e *Engine) leading() bool {
	return e.cfg.Lease == nil || e.cfg.Lease.IsLeader()
}

// followLease runs the lease, if any, until ctx ends; the returned func
// waits for it to give the lease up.
func (e *Engine) followLease(ctx context.Context) (wait func()) {
	if e.cfg.Lease == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.cfg.Lease.Run(ctx); err != nil {
			e.log.Error("leader election ended", "error", err)
		}
	})
	return wg.Wait
}

// checkRole notes a change of role at the tick. It returns whether this
// engine leads for the tick.
func (e *Engine) checkRole(now time.Time) bool {
	lead := e.leading()
	if lead == e.led {
		return lead
	}
	e.led = lead
	if e.cfg.Lease == nil {
		return lead
	}
	if e.share != nil {
		e.share.reset() // a new tenure reads the summaries afresh (combine)
	}
	st := e.cfg.Lease.Status()
	if lead {
		// Read the incidents the previous leader left, this tick.
		e.stateDone, e.restoreAt, e.restoreWait, e.store = false, time.Time{}, 0, nil
		e.log.Info("leading: restoring open incidents from the state bucket", "term", st.Term)
		return true
	}
	// Whatever was open is the new leader's now; starting afresh here
	// also keeps a later tenure from acting on incidents it no longer
	// knows the end of.
	e.eval = rules.NewEvaluator(e.eval.Set(), e.evalOpts()...)
	e.savedTimers = nil
	clear(e.downs)
	e.stateDone, e.store = true, nil
	e.log.Info("standing by", "leader", st.Holder)
	return false
}

// followMembers runs the membership until ctx ends; the returned func
// waits for it to leave.
func (e *Engine) followMembers(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.cfg.Members.Run(ctx); err != nil {
			e.log.Error("membership ended", "bucket", members.Bucket, "error", err)
		}
	})
	return wg.Wait
}

// evalOpts are the evaluator's options, shared by New and a fresh standby.
func (e *Engine) evalOpts() []rules.EvalOption {
	return []rules.EvalOption{rules.OnError(e.ruleError), rules.ForInterval(e.cfg.Interval)}
}

// registerLeaseMetrics exposes the election: happen_leader (1 while this
// engine leads), and the tenures it began and the renewals it made.
func registerLeaseMetrics(reg prometheus.Registerer, l *lease.Lease) {
	if reg == nil || l == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "happen_leader", Help: "1 while this engine holds the leader lease, 0 while it stands by.",
		}, func() float64 { return b2f(l.IsLeader()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "happen_lease_elections_total", Help: "Times this engine took the leader lease.",
		}, func() float64 { return float64(l.Status().Elections) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "happen_lease_renewals_total", Help: "Renewals of the leader lease by this engine.",
		}, func() float64 { return float64(l.Status().Renewals) }),
	)
}
