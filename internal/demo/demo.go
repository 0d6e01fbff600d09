// Package demo is `happen demo`: an embedded NATS server, six nodes in two
// groups with real traffic, and the engine with its built-in rules, all in
// one process. It injects four real faults in turn (a node failure, a
// partition, a bottleneck and an overload), each followed by recovery,
// shows every event as it arrives and ends with a table of what was
// detected and how fast.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/embedded"
	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/internal/eventline"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config says where the demo listens and where it writes.
type Config struct {
	// Interval is the engine's sampling interval; default 1s, what the
	// built-in rules and the workload are stated for. Other intervals work
	// but detect more slowly; every wait stretches with them.
	Interval time.Duration
	// HTTP is where the engine's endpoints and web view listen; default
	// 127.0.0.1:0, a free port.
	HTTP string
	// EmbeddedListen is where the embedded NATS server listens; default
	// 127.0.0.1:0.
	EmbeddedListen string
	// DataDir holds the server's storage; empty: a temporary folder,
	// removed at the end.
	DataDir string
	// Keep leaves everything running after the summary until ctx ends.
	Keep bool
	// Out receives the narrative, the events and the summary; default
	// os.Stdout.
	Out io.Writer
	// Color colours the event lines and marks; set it only for a terminal.
	Color bool
	// Logger receives the engine's and the server's logs; default none.
	Logger *slog.Logger
}

// Run runs the demo to its end (with Keep, until ctx ends) and returns its
// summary. An error means the demo could not run (a port in use, the
// server would not start) or was interrupted; a fault not detected is no
// error, but shows in the Result (see Result.OK).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.HTTP == "" {
		cfg.HTTP = "127.0.0.1:0"
	}
	if cfg.EmbeddedListen == "" {
		cfg.EmbeddedListen = "127.0.0.1:0"
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &demo{cfg: cfg, out: &syncWriter{w: cfg.Out}, log: newEventLog(), nodes: topology()}
	defer d.shutdown()
	res := &Result{}
	if err := d.start(ctx, res); err != nil {
		return nil, err
	}
	err := d.play(res)
	if err != nil {
		return res, err
	}
	d.writeSummary(res)
	if cfg.Keep {
		d.printf("\neverything keeps running until Ctrl-C: web view at %s, NATS at %s (happen status -s %s)\n",
			res.WebURL, res.NATSURL, res.NATSURL)
		<-d.ctx.Done()
		if ctx.Err() == nil { // not the caller's stop: the engine or the web server failed
			return res, context.Cause(d.ctx)
		}
	}
	return res, nil
}

// demo is one run: everything it started, stopped by shutdown in order.
type demo struct {
	cfg   Config
	out   *syncWriter
	log   *eventLog
	nodes []node

	// ctx is the run's: it ends with the caller's (parent), or when the
	// engine or the web server fails (its cause says which).
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the engine, the publisher, the HTTP watcher

	tmpDir  string
	srv     *server.Server
	admin   *nats.Conn // creates the workload, watches the events
	pubConn *nats.Conn
	engConn *nats.Conn
	eng     *engine.Engine
	pub     *publisher
	workers map[string]*worker
}

// start brings up the server, the workload and the engine, and prints
// where to look.
func (d *demo) start(parent context.Context, res *Result) error {
	cfg := d.cfg
	d.parent = parent
	d.ctx, d.cancel = context.WithCancelCause(parent)
	dir := cfg.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "happen-demo-")
		if err != nil {
			return fmt.Errorf("demo data folder: %w", err)
		}
		d.tmpDir, dir = tmp, tmp
	}
	d.printf("happen demo: an embedded NATS server, %d nodes in 2 groups and the built-in rules; %d faults, injected in turn and undone.\n",
		len(d.nodes), Faults)
	srv, err := embedded.Start(d.ctx, embedded.Config{Listen: cfg.EmbeddedListen, DataDir: dir, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	d.srv = srv
	url := srv.ClientURL()
	res.NATSURL = url

	if d.admin, err = nats.Connect(url, nats.Name("happen-demo")); err != nil {
		return fmt.Errorf("connect to the embedded server %s: %w", url, err)
	}
	js, err := jetstream.New(d.admin)
	if err != nil {
		return fmt.Errorf("jetstream on %s: %w", url, err)
	}
	sctx, cancel := context.WithTimeout(d.ctx, 15*time.Second)
	defer cancel()
	// Incidents an earlier run left open in the same data folder would be
	// restored by the engine and muddle this one.
	if err := js.DeleteKeyValue(sctx, engine.StateBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("remove engine state of an earlier run: %w", err)
	}
	if err := setupStream(sctx, js, d.nodes); err != nil {
		return err
	}
	if _, err := d.admin.Subscribe(events.DefaultPrefix+".>", d.onEvent); err != nil {
		return fmt.Errorf("subscribe to %s.>: %w", events.DefaultPrefix, err)
	}
	if err := d.admin.FlushWithContext(sctx); err != nil {
		return fmt.Errorf("subscribe to %s.>: %w", events.DefaultPrefix, err)
	}

	set, err := builtinRules()
	if err != nil {
		return err
	}
	if d.engConn, err = nats.Connect(url, nats.Name("happen-engine"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)); err != nil {
		return fmt.Errorf("engine: connect to %s: %w", url, err)
	}
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWithPrefix("happen_", reg).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// No plugins: the default dispatcher logs what the rules' actions
	// would run, as --dry-run does.
	d.eng = engine.New(d.engConn, set, engine.Config{Interval: cfg.Interval, Logger: cfg.Logger, Registry: reg, Instance: "demo"})
	addr, httpDone, err := httpapi.Serve(d.ctx, cfg.HTTP, httpapi.Handler(d.eng, reg), cfg.Logger)
	if err != nil {
		return err
	}
	res.WebURL = "http://" + addr.String() + "/"
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		if err := <-httpDone; err != nil {
			d.cancel(fmt.Errorf("web view server: %w", err))
		}
	}()
	go func() {
		defer d.wg.Done()
		if err := d.eng.Run(d.ctx); err != nil {
			d.cancel(fmt.Errorf("engine: %w", err))
		}
	}()

	if d.pubConn, err = nats.Connect(url, nats.Name("demo-publisher")); err != nil {
		return fmt.Errorf("publisher: connect to %s: %w", url, err)
	}
	pjs, err := jetstream.New(d.pubConn)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	subjects := make([]string, len(d.nodes))
	d.workers = make(map[string]*worker, len(d.nodes))
	for i, n := range d.nodes {
		subjects[i] = n.subject
		w := newWorker(url, streamName, n.id, capacity)
		if err := w.Start(sctx); err != nil {
			return err
		}
		d.workers[n.id] = w
	}
	d.pub = newPublisher(pjs, subjects, steadyRate)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.pub.Run(d.ctx)
	}()

	d.printf("embedded NATS listening on %s\n", url)
	d.printf("web view: %s\n", res.WebURL)
	d.printf("workload: stream %s, nodes %s (group eu) and %s (group us), each on its own connection;\n",
		streamName, d.idsOf("eu"), d.idsOf("us"))
	d.printf("          %d msgs/s of work for each node, each handles up to %d msgs/s\n", steadyRate, capacity)
	return nil
}

// shutdown stops everything start started, in order: the engine and the
// publisher first, so nothing judges the workers as they go, then the
// workers, the server last.
func (d *demo) shutdown() {
	if d.cancel != nil {
		d.cancel(context.Canceled)
	}
	d.wg.Wait()
	for _, w := range d.workers {
		w.Stop()
	}
	if d.engConn != nil {
		drain(d.engConn, 5*time.Second) // every event emitted is delivered
	}
	for _, nc := range []*nats.Conn{d.pubConn, d.admin} {
		if nc != nil {
			nc.Close()
		}
	}
	if d.srv != nil {
		d.srv.Shutdown()
		d.srv.WaitForShutdown()
	}
	if d.tmpDir != "" {
		if err := os.RemoveAll(d.tmpDir); err != nil {
			d.cfg.Logger.Warn("remove demo data folder", "dir", d.tmpDir, "error", err)
		}
	}
}

// apiPrefix is where the engine answers requests, beside its events.
const apiPrefix = events.DefaultPrefix + ".api."

// onEvent prints every event as it arrives and keeps it for the phases.
func (d *demo) onEvent(m *nats.Msg) {
	if strings.HasPrefix(m.Subject, apiPrefix) {
		return // a request to the engine's API (happen status, happen events), not an event
	}
	var env events.Envelope
	if err := json.Unmarshal(m.Data, &env); err != nil || m.Subject != events.DefaultPrefix+"."+env.Type {
		d.printf("  (a message on %s that is not an event)\n", m.Subject)
		return
	}
	at := time.Now()
	// Printed before the phases can see it, so their verdict follows it.
	d.printf("  %s\n", eventline.Format(env, eventline.Options{Color: d.cfg.Color}))
	d.log.add(newSeenEvent(env, at))
}

// idsOf names the nodes of group, e.g. orders-eu-1..3.
func (d *demo) idsOf(group string) string { return idRange(d.groupIDs(group)) }

// idRange names ids compactly: orders-us-1..3 for ids that differ only in
// the number after their last dash, else a list.
func idRange(ids []string) string {
	if len(ids) < 2 {
		return strings.Join(ids, ", ")
	}
	i := strings.LastIndexByte(ids[0], '-')
	if i < 0 {
		return strings.Join(ids, ", ")
	}
	prefix := ids[0][:i+1]
	for _, id := range ids {
		if !strings.HasPrefix(id, prefix) || strings.Contains(id[len(prefix):], "-") {
			return strings.Join(ids, ", ")
		}
	}
	return ids[0] + ".." + ids[len(ids)-1][len(prefix):]
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

// builtinRules is the ruleset compiled into the binary, as `happen engine`
// loads it with no --rules. With no plugins installed, its optional
// actions are skipped.
func builtinRules() (*rules.Set, error) {
	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("built-in rules: %w", err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		return nil, fmt.Errorf("built-in rules: %w", err)
	}
	return set, nil
}

// drain flushes what nc has published and closes it, waiting at most d.
func drain(nc *nats.Conn, d time.Duration) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		nc.Close()
	}
}

// syncWriter serialises writes from the event subscription and the
// phases, so lines never interleave.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
