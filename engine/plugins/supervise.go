package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/pluginhost"
)

// healthyRun is how long a process must live for its next death to be
// restarted without the backoff built up by earlier quick deaths.
const healthyRun = time.Minute

// plug is one plugin: its file, what it described, and the process that
// serves it now. A supervisor goroutine owns the process.
type plug struct {
	m        *Manager
	name     string
	path     string // as found in the folder
	real     string // what is run
	checksum []byte
	log      *slog.Logger

	// desc and params are set once, by first, before the plugin is used.
	desc   *sdk.DescribeResponse
	params map[string]sdk.Param

	// slots bounds the calls in flight to this plugin (Config.MaxPerPlugin).
	slots *sem

	mu       sync.Mutex
	cur      *pluginhost.Plugin // nil while no process serves
	ready    chan struct{}      // closed while cur is set
	err      error              // why it is not running, or the last restart failure
	restarts int
	// why says why a caller stopped handing cur out (markBroken).
	why string
	// timeouts counts the calls in a row to cur that timed out.
	timeouts int
	// kick wakes the supervisor after markBroken. It carries no process:
	// the supervisor looks at cur, so a wake-up can never be lost to a
	// stale one still in the buffer.
	kick chan struct{}
}

func newPlug(m *Manager, c candidate) *plug {
	return &plug{
		m: m, name: c.name, path: c.path, real: c.real, checksum: c.checksum,
		log:   m.log.With("plugin", c.name),
		slots: newSem(m.cfg.MaxPerPlugin),
		ready: make(chan struct{}),
		kick:  make(chan struct{}, 1),
	}
}

func (p *plug) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *plug) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		return ""
	}
	return p.err.Error()
}

// first starts the process the first time and keeps its description.
func (p *plug) first(ctx context.Context) {
	inst, desc, err := p.start(ctx)
	if err != nil {
		p.fail(err)
		return
	}
	if desc.Name != "" && desc.Name != p.name {
		p.log.Warn("plugin calls itself by another name; rules use the file's", "described", desc.Name, "path", p.path)
	}
	p.desc = desc
	p.params = make(map[string]sdk.Param, len(desc.Params))
	for _, q := range desc.Params {
		p.params[q.Name] = q
	}
	p.setCurrent(inst)
}

// start runs one process and checks it answers Describe.
func (p *plug) start(ctx context.Context) (*pluginhost.Plugin, *sdk.DescribeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, p.m.cfg.StartTimeout)
	defer cancel()
	inst, err := pluginhost.Start(ctx, pluginhost.Config{
		Path:     p.real,
		Host:     p.m.cfg.Host,
		Logger:   p.log,
		Redact:   p.m.secrets.redact,
		Checksum: p.checksum,
		Env:      pluginEnv(),
	})
	if err != nil {
		return nil, nil, err
	}
	desc, err := inst.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		inst.Kill()
		return nil, nil, fmt.Errorf("plugin %s: describe: %w", p.path, err)
	}
	return inst, desc, nil
}

func (p *plug) setCurrent(inst *pluginhost.Plugin) {
	p.mu.Lock()
	p.cur, p.err, p.why, p.timeouts = inst, nil, "", 0
	close(p.ready)
	p.mu.Unlock()
	p.m.metrics.up.WithLabelValues(p.name).Set(1)
}

// clear forgets inst if it is the current process, and reports whether it
// was.
func (p *plug) clear(inst *pluginhost.Plugin) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clearLocked(inst)
}

func (p *plug) clearLocked(inst *pluginhost.Plugin) bool {
	if p.cur != inst || inst == nil {
		return false
	}
	p.cur = nil
	p.ready = make(chan struct{})
	p.m.metrics.up.WithLabelValues(p.name).Set(0)
	return true
}

// markBroken is called by a caller that found inst unreachable or hung: it
// stops handing inst out and has the supervisor kill and replace it.
func (p *plug) markBroken(inst *pluginhost.Plugin, why string) {
	p.mu.Lock()
	cleared := p.clearLocked(inst)
	if cleared {
		p.why = why
	}
	p.mu.Unlock()
	if cleared {
		select {
		case p.kick <- struct{}{}:
		default: // a wake-up is pending already; it will find cur changed
		}
	}
}

// answered records that inst answered a call in time.
func (p *plug) answered(inst *pluginhost.Plugin) {
	p.mu.Lock()
	if p.cur == inst {
		p.timeouts = 0
	}
	p.mu.Unlock()
}

// timedOut records that a call to inst timed out. After HungAfter in a row
// the process is deemed hung: it is killed and restarted, and the calls
// still waiting on it fail and are retried as usual.
func (p *plug) timedOut(inst *pluginhost.Plugin) {
	limit := p.m.cfg.HungAfter
	p.mu.Lock()
	if p.cur != inst {
		p.mu.Unlock()
		return
	}
	p.timeouts++
	n := p.timeouts
	p.mu.Unlock()
	if limit > 0 && n >= limit {
		p.markBroken(inst, fmt.Sprintf("hung: %d calls in a row timed out", n))
	}
}

// get returns the running process, waiting for a restart while there is
// none, until ctx ends.
func (p *plug) get(ctx context.Context) (*pluginhost.Plugin, error) {
	for {
		p.mu.Lock()
		cur, ready, lastErr := p.cur, p.ready, p.err
		p.mu.Unlock()
		if cur != nil {
			select {
			case <-cur.Done():
				p.markBroken(cur, "exited")
				continue
			default:
				return cur, nil
			}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("plugin %s is not running: %w", p.name, lastErr)
			}
			return nil, fmt.Errorf("plugin %s is not running: waiting for its restart: %w", p.name, ctx.Err())
		}
	}
}

// supervise owns the plugin's processes until ctx ends: it replaces one
// that exits or that a caller found unreachable or hung, with backoff
// between quick deaths, and kills the last one at the end. inst is the
// process first started, read by the caller before any worker could have
// dropped it; nil means there is none and one must be started.
func (p *plug) supervise(ctx context.Context, inst *pluginhost.Plugin) {
	quick := 0 // deaths in a row of processes that lived less than healthyRun
	for {
		if inst != nil {
			began := time.Now()
			reason := p.watch(ctx, inst)
			p.clear(inst)
			inst.Kill()
			if ctx.Err() != nil {
				p.m.metrics.up.WithLabelValues(p.name).Set(0)
				return
			}
			if time.Since(began) >= healthyRun {
				quick = 0
			}
			p.log.Warn("plugin process stopped; restarting", "reason", reason, "pid", inst.Pid())
		}
		inst = p.restart(ctx, &quick)
		if inst == nil {
			return // ctx ended
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		p.m.metrics.restarts.WithLabelValues(p.name).Inc()
		p.setCurrent(inst)
		p.log.Info("plugin restarted", "pid", inst.Pid())
	}
}

// restart starts a new process, waiting with backoff before each try, and
// returns it; nil only when ctx ended.
func (p *plug) restart(ctx context.Context, quick *int) *pluginhost.Plugin {
	for {
		delay := backoff(p.m.cfg.RestartBackoff, p.m.cfg.MaxRestartBackoff, *quick)
		*quick++
		if !sleep(ctx, delay) {
			return nil
		}
		next, _, err := p.start(ctx)
		if err == nil {
			return next
		}
		if ctx.Err() != nil {
			return nil
		}
		p.fail(err)
		p.log.Error("plugin restart failed", "error", err, "retryIn", backoff(p.m.cfg.RestartBackoff, p.m.cfg.MaxRestartBackoff, *quick))
	}
}

// watch waits until inst exits, is no longer the current process (a caller
// found it unreachable or hung), or ctx ends. inst is never nil.
func (p *plug) watch(ctx context.Context, inst *pluginhost.Plugin) string {
	for {
		p.mu.Lock()
		gone, why := p.cur != inst, p.why
		p.mu.Unlock()
		if gone {
			if why == "" {
				why = "unreachable"
			}
			return why
		}
		select {
		case <-inst.Done():
			return "exited"
		case <-p.kick:
		case <-ctx.Done():
			return "shutdown"
		}
	}
}

func (p *plug) paramNames() []string {
	names := make([]string, 0, len(p.params))
	for n := range p.params {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (p *plug) info() Info {
	in := Info{Name: p.name, Path: p.path}
	if p.desc != nil {
		in.Version = p.desc.Version
		in.Params = append([]sdk.Param(nil), p.desc.Params...)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		in.Running, in.Pid = true, p.cur.Pid()
	}
	in.Restarts = p.restarts
	if p.err != nil {
		in.Error = p.err.Error()
	}
	return in
}

// backoff is base doubled n times, at most limit.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for range n {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
