package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/happen-dev/happen/engine/action"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/happen-dev/happen/sdk/pluginhost"
)

// Operations named in action.failed.
const (
	OpExecute = "execute" // a rule fired
	OpUndo    = "undo"    // its incident ended
)

// queue holds one key's jobs. The key is in Manager.ready exactly while it
// has jobs and none of them is running.
type queue struct {
	jobs []action.Job
	busy bool
}

// Dispatch queues job behind the earlier jobs of its key and returns at
// once. ctx is not kept: jobs run until Close.
func (m *Manager) Dispatch(_ context.Context, job action.Job) {
	if len(job.Actions) == 0 {
		return
	}
	if m.cfg.DryRun {
		for _, a := range job.Actions {
			m.log.Info("dry run: would run action", "plugin", a.Plugin, "op", op(job),
				"rule", job.Rule, "event", job.Event.Type, "eventId", job.Event.Context.ID, "key", job.Key)
		}
		return
	}
	m.mu.Lock()
	if m.closed || !m.running {
		m.mu.Unlock()
		m.log.Error("plugin actions not run: the plugin manager is not running",
			"rule", job.Rule, "eventId", job.Event.Context.ID, "key", job.Key)
		return
	}
	q := m.queues[job.Key]
	if q == nil {
		q = &queue{}
		m.queues[job.Key] = q
	}
	if !q.busy && len(q.jobs) == 0 {
		m.ready = append(m.ready, job.Key)
		m.cond.Broadcast()
	}
	q.jobs = append(q.jobs, job)
	if len(q.jobs) > m.cfg.QueueSize {
		// Started under the lock, so Close, which waits for these
		// goroutines, cannot miss it.
		m.drop(q.jobs[0])
		q.jobs = q.jobs[1:]
	} else {
		m.metrics.queued.Inc()
	}
	m.mu.Unlock()
}

// drop reports a job pushed out of a full queue, off the caller's path. It
// is called with m.mu held.
func (m *Manager) drop(job action.Job) {
	text := fmt.Sprintf("dropped: more than %d jobs queued for %q", m.cfg.QueueSize, job.Key)
	m.aux.Go(func() {
		for _, a := range job.Actions {
			r := newResult(job, a, OutcomeDropped)
			r.Error = text
			m.finish(m.runCtx, job, a, r)
		}
	})
}

// work is one of MaxParallel workers: it takes the next key in turn, runs
// that key's oldest job and puts the key back in line if it has more.
func (m *Manager) work() {
	for {
		m.mu.Lock()
		for len(m.ready) == 0 && !m.stopping {
			m.cond.Wait()
		}
		if m.stopping {
			m.mu.Unlock()
			return
		}
		key := m.ready[0]
		m.ready = m.ready[1:]
		q := m.queues[key]
		job := q.jobs[0]
		q.jobs = q.jobs[1:]
		q.busy = true
		m.metrics.queued.Dec()
		m.mu.Unlock()

		m.runJob(m.runCtx, job)

		m.mu.Lock()
		q.busy = false
		if len(q.jobs) > 0 {
			m.ready = append(m.ready, key)
		} else {
			delete(m.queues, key)
		}
		m.cond.Broadcast()
		m.mu.Unlock()
	}
}

// Result is how one action ended.
type Result struct {
	Plugin   string
	Op       string // OpExecute or OpUndo
	Rule     string
	EventID  string
	Key      string
	Outcome  string // OutcomeOK, OutcomeFailed, OutcomeDropped or OutcomeSkipped
	Attempts int
	// Duration runs from the first attempt to the last one's end.
	Duration time.Duration
	// Message is what the plugin answered on success; Error why it failed.
	// Secrets are redacted from both.
	Message string
	Error   string
}

// Outcomes of an action.
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"  // reported as action.failed
	OutcomeDropped = "dropped" // pushed out of a full queue; reported as action.failed
	OutcomeSkipped = "skipped" // optional, and its plugin is not installed
)

// runJob runs a job's actions one after the other; one failing does not
// stop the next.
func (m *Manager) runJob(ctx context.Context, job action.Job) {
	for i, a := range job.Actions {
		if ctx.Err() != nil {
			m.log.Warn("plugin action abandoned at shutdown", "plugin", a.Plugin, "op", op(job),
				"rule", job.Rule, "eventId", job.Event.Context.ID)
			continue
		}
		r, done := m.runAction(ctx, job, i, a)
		if done {
			m.finish(ctx, job, a, r)
		}
	}
}

func op(job action.Job) string {
	if job.Resolve {
		return OpUndo
	}
	return OpExecute
}

// IdempotencyKey is what every attempt of one action carries: the event,
// the plugin, the action's place in its rule and whether it fires or
// resolves.
func IdempotencyKey(job action.Job, index int, plugin string) string {
	return fmt.Sprintf("%s/%s/%d/%s", job.Event.Context.ID, plugin, index, op(job))
}

func newResult(job action.Job, a rules.Action, outcome string) Result {
	return Result{
		Plugin: a.Plugin, Op: op(job), Rule: job.Rule, EventID: job.Event.Context.ID,
		Key: job.Key, Outcome: outcome,
	}
}

// runAction runs one action with its retries. It reports false when the
// action was abandoned because the manager is closing.
func (m *Manager) runAction(ctx context.Context, job action.Job, index int, a rules.Action) (Result, bool) {
	log := m.actionLog(job, a)
	p, ok := m.plugins[a.Plugin]
	if !ok || p.desc == nil {
		if a.Optional {
			// Warned about once, when the rules were loaded.
			log.Debug("optional action skipped: plugin not installed")
			return newResult(job, a, OutcomeSkipped), true
		}
		r := newResult(job, a, OutcomeFailed)
		r.Error = "plugin " + a.Plugin + " is not installed"
		return r, true
	}
	with, secrets, err := expand(a.With)
	if err != nil && a.Optional && errors.Is(err, errUnset) {
		// An optional action configured from the environment is off while
		// its variable is unset; say so once, not at every incident.
		if _, warned := m.unsetWarned.LoadOrStore(job.Rule+"\x00"+a.Plugin, true); !warned {
			log.Warn("optional action skipped while its environment variable is unset", "reason", err.Error())
		}
		return newResult(job, a, OutcomeSkipped), true
	}
	if err != nil {
		r := newResult(job, a, OutcomeFailed)
		r.Error = err.Error()
		return r, true
	}
	secrets = append(secrets, secretParams(p.params, with)...)
	m.secrets.add(secrets...)
	red := newRedactor()
	red.add(secrets...)
	if missing := missingParams(p.params, with); len(missing) > 0 {
		r := newResult(job, a, OutcomeFailed)
		r.Error = fmt.Sprintf("missing required parameter(s) %q", missing)
		return r, true
	}
	req := &sdk.ExecuteRequest{
		Event:          job.Event,
		Down:           job.Down,
		Rule:           job.Rule,
		With:           with,
		Resolve:        job.Resolve,
		IdempotencyKey: IdempotencyKey(job, index, a.Plugin),
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = m.cfg.DefaultTimeout
	}
	began := time.Now()
	for attempt := 1; ; attempt++ {
		msg, err := m.attempt(ctx, p, req, timeout)
		if err == nil {
			r := newResult(job, a, OutcomeOK)
			r.Attempts, r.Duration, r.Message = attempt, time.Since(began), red.redact(msg)
			return r, true
		}
		text := red.redact(err.Error())
		if ctx.Err() != nil {
			log.Warn("plugin action abandoned at shutdown", "attempts", attempt, "error", text)
			return Result{}, false
		}
		var ae *pluginhost.ActionError
		permanent := errors.As(err, &ae) && ae.Permanent
		if permanent || attempt > m.cfg.Retries {
			r := newResult(job, a, OutcomeFailed)
			r.Attempts, r.Duration, r.Error = attempt, time.Since(began), text
			return r, true
		}
		wait := backoff(m.cfg.Backoff, m.cfg.MaxBackoff, attempt-1)
		log.Warn("plugin action failed; retrying", "attempt", attempt, "retryIn", wait, "error", text)
		if !sleep(ctx, wait) {
			log.Warn("plugin action abandoned at shutdown", "attempts", attempt, "error", text)
			return Result{}, false
		}
	}
}

func (m *Manager) actionLog(job action.Job, a rules.Action) *slog.Logger {
	return m.log.With("plugin", a.Plugin, "op", op(job), "rule", job.Rule,
		"event", job.Event.Type, "eventId", job.Event.Context.ID, "key", job.Key)
}

// finish records how an action ended: metrics, log, action.failed, Observe.
func (m *Manager) finish(ctx context.Context, job action.Job, a rules.Action, r Result) {
	m.metrics.actions.WithLabelValues(a.Plugin, r.Outcome).Inc()
	if r.Attempts > 0 {
		m.metrics.duration.WithLabelValues(a.Plugin).Observe(r.Duration.Seconds())
	}
	switch r.Outcome {
	case OutcomeOK:
		m.actionLog(job, a).Debug("plugin action done", "attempts", r.Attempts,
			"duration", r.Duration, "message", r.Message)
	case OutcomeFailed, OutcomeDropped:
		m.actionLog(job, a).Error("plugin action failed", "outcome", r.Outcome,
			"attempts", r.Attempts, "error", r.Error)
		if m.cfg.Emit != nil {
			m.cfg.Emit(ctx, events.ActionFailed{
				Plugin:  a.Plugin,
				Action:  op(job),
				Error:   r.Error,
				EventID: job.Event.Context.ID,
			}, job.Event)
		}
	}
	if m.cfg.Observe != nil {
		m.cfg.Observe(r)
	}
}

// attempt makes one call, bounded by timeout, including any wait for the
// plugin's restart.
func (m *Manager) attempt(ctx context.Context, p *plug, req *sdk.ExecuteRequest, timeout time.Duration) (string, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, err := p.get(actx)
	if err != nil {
		return "", timeoutError(ctx, actx, timeout, err)
	}
	call := inst.Execute
	if req.Resolve {
		call = inst.Undo
	}
	resp, err := call(actx, req)
	if err != nil {
		if errors.Is(err, pluginhost.ErrUnavailable) {
			p.markBroken(inst)
		}
		return "", timeoutError(ctx, actx, timeout, err)
	}
	return resp.Message, nil
}

// timeoutError names the timeout when the attempt's own deadline passed.
func timeoutError(ctx, actx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return err
}
