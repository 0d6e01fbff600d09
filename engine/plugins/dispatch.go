package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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

// queue holds one key's jobs not yet started. The key is in
// Manager.queues exactly while its runner goroutine lives.
type queue struct {
	jobs []action.Job
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
		// The key's first turn is asked for here, so keys take turns in
		// the order of their first jobs' dispatch. The runner is added
		// under the lock while not closed, so before Close waits.
		key, ticket := job.Key, m.turns.enqueue()
		m.workers.Go(func() { m.runKey(key, q, ticket) })
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

// runKey runs key's jobs one after the other, oldest first, until its
// queue is empty or the manager stops. Each job waits in its queue for a
// turn (one of MaxParallel, handed out in the order asked for); so a job
// waiting for its turn can still be dropped when the queue overflows.
// ticket is the first turn, asked for by Dispatch.
func (m *Manager) runKey(key string, q *queue, ticket chan struct{}) {
	for {
		if ticket == nil {
			ticket = m.turns.enqueue() // behind the keys already waiting
		}
		t := &turn{m: m}
		if t.await(m.runCtx, ticket) != nil {
			return // Close gave up on the jobs left
		}
		ticket = nil
		m.mu.Lock()
		if m.stopping {
			m.mu.Unlock()
			t.yield()
			return
		}
		job := q.jobs[0]
		q.jobs = q.jobs[1:]
		m.metrics.queued.Dec()
		m.mu.Unlock()

		m.runJob(m.runCtx, t, job)
		t.yield()

		m.mu.Lock()
		if len(q.jobs) == 0 || m.stopping {
			if len(q.jobs) == 0 {
				delete(m.queues, key)
			}
			m.cond.Broadcast()
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// turn is a runner's hold on one of the MaxParallel turns.
type turn struct {
	m    *Manager
	held bool
}

// yield gives the turn back, if held.
func (t *turn) yield() {
	if t.held {
		t.held = false
		t.m.turns.release()
	}
}

// resume waits for a turn, behind those who asked before, until ctx ends.
func (t *turn) resume(ctx context.Context) error {
	if t.held {
		return nil
	}
	return t.await(ctx, t.m.turns.enqueue())
}

// await waits for the turn ticket asked for.
func (t *turn) await(ctx context.Context, ticket chan struct{}) error {
	if err := t.m.turns.await(ctx, ticket); err != nil {
		return err
	}
	t.held = true
	return nil
}

// sem is a counting semaphore that serves its waiters in arrival order.
type sem struct {
	mu   sync.Mutex
	free int
	wait []chan struct{} // closed when granted
}

func newSem(n int) *sem { return &sem{free: n} }

// tryAcquire takes a unit if one is free and nobody waits for it.
func (s *sem) tryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.free > 0 && len(s.wait) == 0 {
		s.free--
		return true
	}
	return false
}

// acquire takes a unit, waiting behind earlier callers, until ctx ends.
func (s *sem) acquire(ctx context.Context) error {
	return s.await(ctx, s.enqueue())
}

// enqueue asks for a unit: it takes one at once and returns a closed
// channel if one is free and nobody waits, else it returns a channel
// closed once the unit is granted, for await.
func (s *sem) enqueue() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if s.free > 0 && len(s.wait) == 0 {
		s.free--
		close(ch)
		return ch
	}
	s.wait = append(s.wait, ch)
	return ch
}

// await waits until the unit asked for by enqueue is granted, or ctx ends;
// then it gives up its place, or passes the unit on if it came meanwhile.
func (s *sem) await(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for i, w := range s.wait {
			if w == ch {
				s.wait = slices.Delete(s.wait, i, i+1)
				s.mu.Unlock()
				return ctx.Err()
			}
		}
		s.mu.Unlock()
		// Granted meanwhile: pass the unit on.
		s.release()
		return ctx.Err()
	}
}

// release gives a unit back, to the longest waiter if any.
func (s *sem) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.wait) > 0 {
		close(s.wait[0])
		s.wait = s.wait[1:]
		return
	}
	s.free++
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
// stop the next. t is held on entry; it may be yielded on return.
func (m *Manager) runJob(ctx context.Context, t *turn, job action.Job) {
	for i, a := range job.Actions {
		if ctx.Err() != nil {
			m.log.Warn("plugin action abandoned at shutdown", "plugin", a.Plugin, "op", op(job),
				"rule", job.Rule, "eventId", job.Event.Context.ID)
			continue
		}
		r, done := m.runAction(ctx, t, job, i, a)
		if done {
			_ = t.resume(ctx) // held already, but for a race with Close
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
// action was abandoned because the manager is closing. It gives t back
// while it waits for a retry or for a slot of its plugin, so that other
// keys' jobs can run meanwhile.
func (m *Manager) runAction(ctx context.Context, t *turn, job action.Job, index int, a rules.Action) (Result, bool) {
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
		msg, err := m.attempt(ctx, t, p, req, timeout)
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
		t.yield()
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
// plugin's restart but not the wait for a turn and a slot of the plugin.
// It returns holding t, unless ctx ended.
func (m *Manager) attempt(ctx context.Context, t *turn, p *plug, req *sdk.ExecuteRequest, timeout time.Duration) (string, error) {
	if err := m.slot(ctx, t, p); err != nil {
		return "", err
	}
	defer p.slots.release()
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
		switch {
		case errors.Is(err, pluginhost.ErrUnavailable):
			p.markBroken(inst, "unreachable")
		case ctx.Err() != nil: // shutdown: says nothing of the process
		case timedOut(ctx, actx, err):
			p.timedOut(inst)
		default:
			p.answered(inst)
		}
		return "", timeoutError(ctx, actx, timeout, err)
	}
	p.answered(inst)
	return resp.Message, nil
}

// slot takes one of p's call slots and a turn. A runner waiting for the
// slot gives its turn back meanwhile, and takes a turn again behind those
// already waiting; it holds no turn while it waits for a slot, so a plugin
// whose calls hang holds at most MaxPerPlugin turns.
func (m *Manager) slot(ctx context.Context, t *turn, p *plug) error {
	if t.held && p.slots.tryAcquire() {
		return nil
	}
	t.yield()
	if err := p.slots.acquire(ctx); err != nil {
		return err
	}
	if err := t.resume(ctx); err != nil {
		p.slots.release()
		return err
	}
	return nil
}

// timeoutError names the timeout when the attempt's own deadline passed.
func timeoutError(ctx, actx context.Context, timeout time.Duration, err error) error {
	if timedOut(ctx, actx, err) {
		return fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return err
}

// timedOut reports whether err ended an attempt because the attempt's own
// deadline passed. gRPC may report its deadline a moment before actx's
// timer fires, so a DeadlineExceeded error counts as well: ctx has no
// deadline, only actx does.
func timedOut(ctx, actx context.Context, err error) bool {
	return ctx.Err() == nil &&
		(errors.Is(actx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded))
}
