// Package plugins runs rule actions in plugin processes. The Manager finds
// every happen-plugin-<name> executable directly in its folder, starts each
// once, keeps what it describes (name, version, `with` parameters) for the
// rules loader, restarts a process that dies, and runs each action with a
// timeout and retries, reporting action.failed when they run out, and
// restarts a process whose calls keep timing out. Actions for one key (a
// node, or the system) run in the order dispatched; actions for different
// keys run in parallel, up to a bound, of which one plugin may take only a
// share. A plugin can never take the engine down: it is another process,
// and every call to it is bounded.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/happen-dev/happen/engine/action"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

// Config configures a Manager. Zero fields take the defaults given.
type Config struct {
	// Dir is the folder searched for happen-plugin-* executables. Empty, or
	// a folder that does not exist, means no plugins.
	Dir string
	// Host is lent to every plugin process; it is required.
	Host   sdk.Host
	Logger *slog.Logger
	// DefaultTimeout bounds one attempt of an action whose rule gives no
	// timeout; default 10s.
	DefaultTimeout time.Duration
	// Retries is how many times a failed action is tried again; default 3,
	// negative for none.
	Retries int
	// Backoff is the wait before the first retry, doubled before each next
	// one up to MaxBackoff; defaults 200ms and 5s.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxParallel bounds how many actions run at once; default 16. An
	// action waiting for its retry, or for a slot of its plugin, is not
	// running and does not count.
	MaxParallel int
	// MaxPerPlugin bounds how many of those one plugin may run at once, so
	// that a plugin that hangs cannot hold up the others' actions; default
	// half of MaxParallel, but at least 2 and at most MaxParallel.
	MaxPerPlugin int
	// HungAfter is how many calls in a row to one plugin process may time
	// out before the process is deemed hung, killed and restarted; default
	// Retries+2, so that one action running out of its attempts does not
	// on its own cost the process. Negative for never.
	HungAfter int
	// QueueSize bounds the jobs waiting for one key; default 64. When it
	// overflows the oldest job is dropped and reported as action.failed.
	QueueSize int
	// RestartBackoff is the wait before restarting a plugin process that
	// died, doubled after each quick death up to MaxRestartBackoff;
	// defaults 100ms and 30s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// StartTimeout bounds starting one plugin process and its Describe;
	// default 10s.
	StartTimeout time.Duration
	// Emit publishes action.failed; cause is the event whose action failed.
	// May be nil, then failures are only logged.
	Emit func(ctx context.Context, failed events.ActionFailed, cause events.Envelope)
	// Observe, when set, is called after every action ends, whatever the
	// outcome, e.g. for an audit trail. It runs on a worker: keep it short.
	Observe func(Result)
	// DryRun logs what would run and runs nothing. Plugins are still
	// started and described, so rules are checked against them.
	DryRun bool
	// Registry receives the manager's Prometheus metrics; may be nil.
	Registry prometheus.Registerer
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&c.DefaultTimeout, 10*time.Second)
	setDur(&c.Backoff, 200*time.Millisecond)
	setDur(&c.MaxBackoff, 5*time.Second)
	setDur(&c.RestartBackoff, 100*time.Millisecond)
	setDur(&c.MaxRestartBackoff, 30*time.Second)
	setDur(&c.StartTimeout, 10*time.Second)
	switch {
	case c.Retries == 0:
		c.Retries = 3
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.MaxParallel <= 0 {
		c.MaxParallel = 16
	}
	if c.MaxPerPlugin <= 0 {
		c.MaxPerPlugin = max(2, c.MaxParallel/2)
	}
	c.MaxPerPlugin = min(c.MaxPerPlugin, c.MaxParallel)
	switch {
	case c.HungAfter == 0:
		c.HungAfter = max(3, c.Retries+2)
	case c.HungAfter < 0:
		c.HungAfter = 0 // never
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 64
	}
}

// Manager runs plugins. Create it with New, then Start it; Close stops it.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	secrets *redactor

	// plugins is written by Start only, before any reader can run.
	plugins map[string]*plug
	order   []string // names in discovery order

	runCtx    context.Context // ends when Close gives up on running actions
	cancelRun context.CancelFunc
	supCtx    context.Context // ends when Close stops the plugin processes
	cancelSup context.CancelFunc
	workers   sync.WaitGroup // one runner per key with jobs
	sups      sync.WaitGroup
	aux       sync.WaitGroup // emissions for dropped jobs

	startDone chan struct{} // closed when Start returns

	// turns bounds the keys running a job at once (MaxParallel); a runner
	// gives its turn back while it waits for a retry or a plugin's slot.
	turns *sem

	unsetWarned sync.Map // rule+plugin of optional actions skipped for an unset variable

	mu       sync.Mutex
	cond     *sync.Cond
	started  bool
	running  bool              // Start has finished: Dispatch takes jobs
	closed   bool              // no more dispatches
	stopping bool              // runners exit
	queues   map[string]*queue // a key is here while its runner lives
}

var (
	_ action.Dispatcher   = (*Manager)(nil)
	_ rules.PluginCatalog = (*Manager)(nil)
)

// New checks cfg and returns a manager. It does no I/O.
func New(cfg Config) (*Manager, error) {
	if cfg.Host == nil {
		return nil, errors.New("plugins: config has no Host")
	}
	cfg.defaults()
	met, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   met,
		secrets:   newRedactor(),
		plugins:   map[string]*plug{},
		queues:    map[string]*queue{},
		startDone: make(chan struct{}),
		turns:     newSem(cfg.MaxParallel),
	}
	m.cond = sync.NewCond(&m.mu)
	m.runCtx, m.cancelRun = context.WithCancel(context.Background())
	m.supCtx, m.cancelSup = context.WithCancel(context.Background())
	return m, nil
}

// Start discovers the plugins in the folder and starts each, in parallel.
// Dispatch takes jobs once it has returned.
// A plugin that cannot be started (not executable, another protocol
// version, crashes, fails to describe itself) is logged, reported by
// Plugins and left out; the others run. Start fails only when the folder
// cannot be read or the manager was started or closed before.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("plugins: manager already started or closed")
	}
	m.started = true
	m.mu.Unlock()
	defer close(m.startDone)

	found, err := discover(m.cfg.Dir)
	if err != nil {
		return err
	}
	if m.cfg.Dir != "" && len(found) == 0 {
		m.log.Info("no plugins found", "dir", m.cfg.Dir)
	}
	var wg sync.WaitGroup
	for _, c := range found {
		p := newPlug(m, c)
		m.plugins[p.name] = p
		m.order = append(m.order, p.name)
		if c.err != nil {
			p.fail(c.err)
			continue
		}
		wg.Go(func() { p.first(ctx) })
	}
	wg.Wait()
	for _, name := range m.order {
		p := m.plugins[name]
		// Read now, before any action runs: once Start returns, a caller
		// may drop the process (markBroken) before the supervisor runs.
		p.mu.Lock()
		inst := p.cur
		p.mu.Unlock()
		if p.desc == nil {
			m.log.Error("plugin unavailable", "plugin", p.name, "path", p.path, "error", p.errText())
			continue
		}
		m.log.Info("plugin started", "plugin", p.name, "version", p.desc.Version,
			"path", p.path, "params", p.paramNames())
		m.sups.Go(func() { p.supervise(m.supCtx, inst) })
	}
	m.mu.Lock()
	m.running = true
	m.mu.Unlock()
	return nil
}

// Params returns the `with` parameters the plugin accepts, and false when
// no plugin of that name is installed and running.
func (m *Manager) Params(plugin string) ([]string, bool) {
	p, ok := m.plugins[plugin]
	if !ok || p.desc == nil {
		return nil, false
	}
	return p.paramNames(), true
}

// Info describes one discovered plugin.
type Info struct {
	Name     string
	Path     string
	Version  string      // as the plugin describes itself
	Params   []sdk.Param // as the plugin describes them
	Running  bool
	Pid      int // 0 while not running
	Restarts int
	// Error says why the plugin is not available, or why its last restart
	// failed; empty when all is well.
	Error string
}

// Plugins lists every happen-plugin-* file found, in name order.
func (m *Manager) Plugins() []Info {
	out := make([]Info, 0, len(m.order))
	for _, name := range m.order {
		out = append(out, m.plugins[name].info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close stops taking jobs, lets queued and running ones finish until ctx
// ends, then cancels what is left, stops every plugin process and waits for
// all of its goroutines. It returns ctx's error when jobs were abandoned.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()
	if started {
		// Start is bounded by its own timeouts; what it starts, Close stops.
		<-m.startDone
	}

	// Wake the drain wait below when ctx ends.
	stopWake := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	m.mu.Lock()
	for len(m.queues) > 0 && ctx.Err() == nil {
		m.cond.Wait()
	}
	left := 0
	for _, q := range m.queues {
		left += len(q.jobs)
	}
	m.stopping = true
	m.cond.Broadcast()
	m.mu.Unlock()
	stopWake()

	m.cancelRun()
	m.workers.Wait()
	m.cancelSup()
	m.sups.Wait()
	m.aux.Wait()
	m.metrics.unregister()
	if left > 0 {
		m.log.Warn("plugin actions abandoned at shutdown", "jobs", left)
		return fmt.Errorf("plugins: %d queued jobs not run: %w", left, ctx.Err())
	}
	return ctx.Err()
}

// pluginEnv is what a plugin process inherits from the engine's
// environment: enough to run and reach the network, nothing that could
// hold the engine's credentials.
func pluginEnv() []string {
	keep := []string{
		"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL",
		"SSL_CERT_FILE", "SSL_CERT_DIR",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	}
	var env []string
	for _, k := range keep {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
