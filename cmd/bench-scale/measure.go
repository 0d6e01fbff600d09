package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The connection names `happen engine` gives its clients.
const (
	engineConnName = "happen-engine"
	systemConnName = "happen-engine-system"
)

// The sampling paths --paths names.
const (
	pathListing = "listing"
	pathSystem  = "system"
)

// result is one row of the table and the notes below it.
type result struct {
	consumers, streams int
	path               string // the engine's sampling path
	setup              time.Duration

	window time.Duration
	ticks  int  // engine ticks in the window
	wired  bool // the wire timed the ticks

	sampleP50, sampleP99 time.Duration // wire, per tick
	sampleP90, sampleMax time.Duration
	kinds                map[string]float64

	// The one engine's figures; with --engines above 1, engines holds each
	// engine's instead and these stay zero.
	engineFigures
	engines []engineFigures

	events      map[string]int
	falseEvents []string

	published, delivered float64 // per second, the load generator's
	unusual              int64

	// What else ran during the window, in cores: the machine busy in all,
	// this program (server and load generator) and everything else.
	machineCores, selfCores, otherCores float64
	cpus                                int
}

// engineFigures are what one engine cost over the window.
type engineFigures struct {
	// With --engines above 1: the engine's --instance, its role
	// ("leader" or "member"), the streams it sampled at the window's end
	// (its /api/status ownedStreams, which counts the engines' own
	// streams too), and the consumers it sampled. nodes is the whole
	// size with one engine.
	name, role string
	owned      int
	nodes      int

	engineHist    scrape // the engine's own histogram, warm-up and window
	engineHistErr error

	cpuCores          float64
	rssAvg, rssPeak   int64
	hwm               int64
	requests          float64 // per tick
	bytesIn, bytesOut float64 // per tick, as the engine sees it: in is what it received

	// One /metrics scrape: how long it took and the engine CPU it cost.
	scrapeTime, scrapeCPU time.Duration
}

func (r result) cpuPerNodeMicros() float64 { return r.engineFigures.cpuPerNodeMicros(r) }

func (r result) bytesPerNode() float64 { return r.engineFigures.bytesPerNode(r) }

// cpuPerNodeMicros is the engine's CPU per tick and node it samples, in
// microseconds.
func (e engineFigures) cpuPerNodeMicros(r result) float64 {
	return e.cpuCores * r.window.Seconds() / float64(max(r.ticks, 1)) / float64(max(e.nodes, 1)) * 1e6
}

func (e engineFigures) bytesPerNode(r result) float64 { return e.bytesIn / float64(max(e.nodes, 1)) }

// run measures every size in turn, each on a fresh server.
func run(ctx context.Context, cfg config) ([]result, error) {
	if cfg.progress != nil {
		// Shared by this program's progress and the engine's output.
		cfg.progress = &syncWriter{w: cfg.progress}
	}
	root, err := os.MkdirTemp(cfg.dir, "bench-scale-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(root)
	bin := cfg.happen
	if bin == "" {
		cfg.progressf("building happen")
		if bin, err = buildHappen(ctx, root); err != nil {
			return nil, err
		}
	}
	var results []result
	for i, n := range cfg.sizes {
		for k, path := range cfg.paths {
			profile := cfg.profile != "" && i == len(cfg.sizes)-1 && k == len(cfg.paths)-1
			pcfg := cfg
			if path == pathSystem {
				pcfg.engineArgs = append([]string{"--system-user", sysUser, "--system-password", sysPassword}, cfg.engineArgs...)
			}
			r, err := measureSize(ctx, pcfg, bin, filepath.Join(root, fmt.Sprintf("%d-%s", n, path)), n, profile)
			if err != nil {
				return results, fmt.Errorf("%d consumers, %s path: %w", n, path, err)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

func measureSize(ctx context.Context, cfg config, bin, dir string, n int, profile bool) (result, error) {
	r := result{consumers: n, streams: cfg.streams, path: samplingPath(cfg.engineArgs)}
	r.nodes = n
	shape := "one server"
	if cfg.cluster {
		shape = "a 3-server cluster"
	}
	cfg.progressf("%d consumers over %d streams on %s, %s", n, cfg.streams, shape, r.path)
	srv, err := startServers(filepath.Join(dir, "nats"), cfg.cluster)
	if err != nil {
		return r, err
	}
	defer srv.shutdown()
	connect := func(i int, name string, opts ...nats.Option) (*nats.Conn, error) {
		opts = append([]nats.Option{nats.Name(name), nats.UserInfo(benchUser, benchPassword), nats.MaxReconnects(-1)}, opts...)
		nc, err := nats.Connect(srv.url(i), opts...)
		if err != nil {
			return nil, fmt.Errorf("connect %s to %s: %w", name, srv.url(i), err)
		}
		return nc, nil
	}

	admin, err := connect(0, "bench-admin", nats.CustomInboxPrefix("_BENCH_ADMIN"))
	if err != nil {
		return r, err
	}
	defer admin.Close()
	began := time.Now()
	l := newLayout(n, cfg.streams, cfg.groups)
	if err := l.create(ctx, cfg, admin); err != nil {
		return r, err
	}
	r.setup = time.Since(began)
	cfg.progressf("created %d consumers in %v", n, r.setup.Round(time.Second))

	// The engine watches through server 0; the load is spread over all.
	ld, err := startLoad(ctx, cfg, l, func(i int, name string) (*nats.Conn, error) { return connect(i+1, name) })
	if err != nil {
		return r, err
	}
	defer ld.stop()

	mon, err := connect(0, "bench-monitor", nats.CustomInboxPrefix("_BENCH_MON"))
	if err != nil {
		return r, err
	}
	defer mon.Close()
	prefix := eventPrefix(cfg.engineArgs)
	system := r.path == "system access"
	conns := []string{engineConnName}
	var sysMon *nats.Conn
	if system {
		conns = append(conns, systemConnName)
		sysMon, err = nats.Connect(srv.url(0), nats.Name("bench-monitor-system"), nats.UserInfo(sysUser, sysPassword),
			nats.CustomInboxPrefix("_BENCH_SYSMON"), nats.MaxReconnects(-1))
		if err != nil {
			return r, fmt.Errorf("connect bench-monitor-system: %w", err)
		}
		defer sysMon.Close()
	}
	w, err := startWire(mon, sysMon, prefix, cfg.interval)
	if err != nil {
		return r, err
	}
	defer w.stop()
	if cfg.engines > 1 {
		return measureShared(ctx, cfg, bin, dir, srv, ld, mon, w, prefix, conns, r, profile)
	}

	port, err := freePort()
	if err != nil {
		return r, err
	}
	plugins := filepath.Join(dir, "no-plugins") // the engine's cost alone, no plugin processes
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return r, fmt.Errorf("plugin dir: %w", err)
	}
	args := engineArgs(cfg, srv.url(0), fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "engine"), plugins)
	ep, err := startEngine(bin, fmt.Sprintf("127.0.0.1:%d", port), args, "engine: ", cfg.progress)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = ep.stop(20 * time.Second)
		}
	}()
	if err := waitReady(ctx, cfg, ep, mon, prefix, n); err != nil {
		return r, err
	}
	// The first ticks meet every node; the histogram's baseline leaves
	// them out. The scrape itself is expensive at scale, and the warm-up
	// lets its garbage go before the window.
	if err := sleep(ctx, 3*cfg.interval); err != nil {
		return r, err
	}
	base, err := ep.scrape(ctx)
	if err != nil {
		return r, err
	}
	cfg.progressf("engine sees all %d nodes; warming up for %v", n, cfg.warmup)
	if err := sleep(ctx, cfg.warmup); err != nil {
		return r, err
	}

	if done, err := ep.exited(); done {
		return r, err
	}
	cfg.progressf("measuring for %v", cfg.measure)
	p0, err := readProc(ep.pid)
	if err != nil {
		return r, err
	}
	m0, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	s0, err := readProc(os.Getpid())
	if err != nil {
		return r, err
	}
	c0, err := srv.connsNamed(conns...)
	if err != nil {
		return r, err
	}
	pub0, del0 := ld.published.Load(), ld.delivered.Load()
	var rss []int64
	t := time.NewTicker(time.Second)
	deadline := p0.at.Add(cfg.measure)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			t.Stop()
			return r, ctx.Err()
		case <-t.C:
		}
		if done, err := ep.exited(); done {
			t.Stop()
			return r, err
		}
		p, err := readProc(ep.pid)
		if err != nil {
			t.Stop()
			return r, err
		}
		rss = append(rss, p.rss)
	}
	t.Stop()
	p1, err := readProc(ep.pid)
	if err != nil {
		return r, err
	}
	m1, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	s1, err := readProc(os.Getpid())
	if err != nil {
		return r, err
	}
	c1, err := srv.connsNamed(conns...)
	if err != nil {
		return r, err
	}
	pub1, del1 := ld.published.Load(), ld.delivered.Load()
	if !slices.Equal(c0.conns, c1.conns) {
		return r, fmt.Errorf("the engine's connections changed during the window (%v, then %v): it reconnected", c0.conns, c1.conns)
	}
	rss = append(rss, p1.rss)

	end, err := ep.scrape(ctx)
	if err != nil {
		return r, err
	}
	p2, err := readProc(ep.pid)
	if err != nil {
		return r, err
	}
	r.engineHist, r.engineHistErr = end.since(base)
	// Let the window's last tick finish before reading the wire.
	if err := sleep(ctx, cfg.interval); err != nil {
		return r, err
	}
	ww, err := w.window(p0.at, p1.at)
	if err != nil {
		return r, err
	}
	r.events, r.falseEvents = w.eventCounts()

	stopped = true
	if err := ep.stop(30 * time.Second); err != nil {
		return r, err
	}

	r.window = p1.at.Sub(p0.at)
	r.ticks = int(math.Round(r.window.Seconds() / cfg.interval.Seconds()))
	if len(ww.samples) > 0 {
		r.wired, r.ticks = true, len(ww.samples)
		r.sampleP50, r.sampleP99 = percentile(ww.samples, 0.50), percentile(ww.samples, 0.99)
		r.sampleP90, r.sampleMax = percentile(ww.samples, 0.90), percentile(ww.samples, 1)
		r.kinds = map[string]float64{}
		for k, v := range ww.kinds {
			r.kinds[k] = float64(v) / float64(r.ticks)
		}
	}
	ticks := float64(max(r.ticks, 1))
	r.cpuCores = p1.cpuSince(p0).Seconds() / r.window.Seconds()
	r.machineCores = (m1 - m0).Seconds() / r.window.Seconds()
	r.selfCores = s1.cpuSince(s0).Seconds() / r.window.Seconds()
	r.otherCores = max(0, r.machineCores-r.cpuCores-r.selfCores)
	// The scrape after the window costs what the engine used meanwhile
	// beyond its usual rate.
	r.scrapeCPU = p2.cpuSince(p1) - time.Duration(r.cpuCores*float64(p2.at.Sub(p1.at)))
	r.scrapeTime = p2.at.Sub(p1.at)
	r.cpus = runtime.NumCPU()
	var sum int64
	for _, v := range rss {
		sum += v
		r.rssPeak = max(r.rssPeak, v)
	}
	r.rssAvg = sum / int64(len(rss))
	r.hwm = p1.hwm
	r.requests = float64(c1.inMsgs-c0.inMsgs) / ticks
	r.bytesOut = float64(c1.inBytes-c0.inBytes) / ticks
	r.bytesIn = float64(c1.outBytes-c0.outBytes) / ticks
	r.published = float64(pub1-pub0) / r.window.Seconds()
	r.delivered = float64(del1-del0) / r.window.Seconds()
	r.unusual = ld.unusual.Load()

	if profile {
		if err := profileInProcess(ctx, cfg, srv.url(0), n); err != nil {
			return r, fmt.Errorf("profile: %w", err)
		}
	}
	return r, nil
}

// engineArgs are the flags of one `happen engine`: the usual ones, then
// cfg's --engine-arg ones.
func engineArgs(cfg config, url, httpAddr, dataDir, plugins string, extra ...string) []string {
	args := []string{
		"--nats", url, "--user", benchUser, "--password", benchPassword,
		"--interval", cfg.interval.String(), "--http", httpAddr,
		"--data", dataDir, "--plugins", plugins, "--log-level", "warn",
	}
	args = append(args, extra...)
	return append(args, cfg.engineArgs...)
}

// waitReady waits until the engine is healthy and sees all n nodes.
func waitReady(ctx context.Context, cfg config, ep *engineProc, nc *nats.Conn, prefix string, n int) error {
	limit := 3*time.Minute + time.Duration(n)*10*time.Millisecond
	deadline := time.Now().Add(limit)
	lastReport := time.Now()
	seen := -1
	for {
		if done, err := ep.exited(); done {
			return err
		}
		if ep.healthy(ctx) {
			if total, err := statusTotal(ctx, nc, prefix); err == nil {
				seen = total
				if total == n {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the engine did not see all %d nodes within %v (last seen: %d; -1: not healthy or not answering)",
				n, limit, seen)
		}
		if time.Since(lastReport) >= 10*time.Second {
			cfg.progressf("  waiting for the engine: it sees %d of %d nodes", max(seen, 0), n)
			lastReport = time.Now()
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// statusTotal asks the engine over NATS how many nodes it sees, for one
// node's page: cheap even at 10,000 nodes, unlike /api/status.
func statusTotal(ctx context.Context, nc *nats.Conn, prefix string) (int, error) {
	st, err := statusOf(ctx, nc, prefix)
	return st.Total, err
}

// percentile is the nearest-rank q-quantile of d.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// samplingPath names how the engine samples, from the flags it is given.
func samplingPath(args []string) string {
	for _, a := range args {
		if strings.HasPrefix(a, "--system") || strings.HasPrefix(a, "-system") {
			return "system access"
		}
	}
	return "consumer listing"
}

// eventPrefix is the engine's --subject-prefix among args, or the default.
func eventPrefix(args []string) string {
	p := "happen.events"
	for i, a := range args {
		a = "--" + strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "--subject-prefix="); ok {
			p = v
		} else if a == "--subject-prefix" && i+1 < len(args) {
			p = args[i+1]
		}
	}
	return p
}
