// Command bench-scale measures what the happen engine costs at scale: it
// starts an embedded JetStream server (or, with --cluster, three routed
// servers), with a system account, in this process, creates N durable pull
// consumers over a set of streams with light real traffic (a steady
// publisher and pulls that ack), runs the real `happen engine` as a separate
// process at --interval, and after a warm-up measures it for a window.
//
// Reading the table, one row per consumer count:
//
//   - sampling: "consumer listing", or "system access" (--paths system,
//     or an --engine-arg passing the engine a --system-... flag): the
//     engine samples through the system account, which the servers have
//     (user sys, password sys), with one JSZ request a tick. Each path is
//     measured at every size, on fresh servers.
//   - sample p50/p99: per tick, from the engine's first request of the
//     tick (a STREAM.LIST at offset 0, or on the system access path the
//     JSZ request) to the last reply the server sent it, seen on the wire
//     by monitor connections on the engine's server. It leaves out the
//     decoding of the last reply and building the snapshot, which "engine
//     mean" includes: the mean of the engine's own
//     happen_sample_duration_seconds histogram over the warm-up and the
//     window (its factor-2 buckets are too coarse for percentiles).
//   - CPU: the engine's CPU time over the window, in cores (CPU seconds
//     per second): the sum of its threads' run times in
//     /proc/<pid>/task/*/schedstat, or utime+stime from /proc/<pid>/stat
//     where the kernel keeps no schedstat. CPU/node is that per tick and
//     node.
//   - RSS avg/peak: VmRSS from /proc/<pid>/status, read every second of the
//     window.
//   - requests, bytes in and out per tick: the server's counters of the
//     engine's connections (happen-engine, and happen-engine-system on the
//     system access path): messages and bytes the
//     engine sent (JetStream API requests, and any events) and received
//     (replies), payloads only. in/node is bytes in per tick and node.
//   - false events: node.down and system.down published while everything
//     is healthy, from the engine's start to the end of the window.
//
// With --engines N above 1 each size runs N engine processes sharing the
// streams, `happen engine --ha --share --instance eK --http <its own port>`
// (e1 ... eN) with the usual flags, all on the one server, or with
// --cluster eK on server K-1 mod 3. The window starts once exactly one
// engine's /api/status says "leader", every engine's lists N members, and
// the leader, the one answering `happen status` over NATS, sees all the
// consumers. The table then has one row per engine and the column
// "engine", its name and role (leader or member), checked unchanged at the
// window's end:
//
//   - CPU, RSS avg/peak and engine mean: that engine's, as above.
//   - requests, bytes in and out: the server's counters of that engine's
//     connections. The engines' connections share their names; each
//     engine's are those whose client port is one of the engine's sockets
//     in /proc/<pid>/fd and /proc/<pid>/net/tcp.
//   - CPU/node and in/node: per tick and node the engine samples: a
//     member's /api/status total, the leader the rest of the consumers
//     (its status total is every engine's nodes).
//   - sample p50/p99: n/a. The engines' requests interleave on the wire,
//     which tells them apart only by reply inbox; engine mean still times
//     each engine's own sampling.
//   - false events: the run's, from all engines' events, on the leader's
//     row (the one that emits); "-" on the members'.
//
// The notes give each engine's streams (its /api/status ownedStreams,
// which counts the engines' own streams such as happen_summaries too) and
// consumers, and the machine's CPU split among the engines.
//
// Flow and rule time are not exposed by the engine (it times only the
// sample); `make bench` measures them in isolation. The load generator and
// the server run in this process, so their cost stays out of the engine's
// figures, but they share the machine with it.
//
// --profile DIR afterwards runs the same engine package in this process
// against the last size's workload and writes a CPU profile of one window
// (cpu.pprof) and a heap profile (heap.pprof); the engine has no profiling
// endpoint; it profiles one engine sampling everything, whatever
// --engines. Read them with `go tool pprof -focus 'happen/engine' ...`:
// the profile also holds the server and the load generator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is one run of the benchmark.
type config struct {
	sizes      []int    // consumer counts, one table row per path each
	paths      []string // sampling paths: listing, system
	streams    int
	groups     int
	rate       float64 // messages per second per stream
	payload    int
	pullConns  int
	storage    string // file or memory
	replicas   int
	cluster    bool
	engines    int // engine processes sharing the streams (--ha --share) when more than 1
	interval   time.Duration
	warmup     time.Duration
	measure    time.Duration
	happen     string   // engine binary; empty: build it
	engineArgs []string // extra happen engine flags
	profile    string   // directory for the in-process profile; empty: none
	output     string   // text or markdown
	dir        string   // parent of the temp dirs; empty: the system's
	progress   io.Writer
}

func defaultConfig() config {
	return config{
		sizes:     []int{1000, 10000},
		paths:     []string{pathListing, pathSystem},
		streams:   100,
		groups:    4,
		rate:      10,
		payload:   64,
		pullConns: 4,
		storage:   "memory",
		replicas:  1,
		engines:   1,
		interval:  time.Second,
		warmup:    30 * time.Second,
		measure:   60 * time.Second,
		output:    "text",
		progress:  os.Stderr,
	}
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := run(ctx, cfg)
	if len(results) > 0 {
		writeTable(os.Stdout, cfg, results)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench-scale: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("bench-scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bench-scale [flags]\n\nMeasures the happen engine's cost at scale (see the package doc). Flags:")
		fs.PrintDefaults()
	}
	sizes := intList(cfg.sizes)
	fs.Var(&sizes, "consumers", "comma-separated consumer counts, one measurement each")
	paths := stringList(cfg.paths)
	fs.Var(&paths, "paths", "comma-separated sampling paths, each measured at every size: listing (consumer listing) and system (system access, user sys)")
	fs.IntVar(&cfg.streams, "streams", cfg.streams, "streams the consumers are spread over")
	fs.IntVar(&cfg.groups, "groups", cfg.groups, "happen.group values the consumers are spread over")
	fs.Float64Var(&cfg.rate, "rate", cfg.rate, "messages per second published to each stream, spread over its consumers")
	fs.IntVar(&cfg.payload, "payload", cfg.payload, "message size in bytes")
	fs.IntVar(&cfg.pullConns, "pull-conns", cfg.pullConns, "connections the consumers' pulls and acks are multiplexed over")
	fs.StringVar(&cfg.storage, "storage", cfg.storage, "stream storage: file or memory")
	fs.IntVar(&cfg.replicas, "replicas", cfg.replicas, "stream replicas (with --cluster, 1 or 3)")
	fs.BoolVar(&cfg.cluster, "cluster", false, "three routed servers with a system account (user sys, password sys) instead of one")
	fs.IntVar(&cfg.engines, "engines", cfg.engines, "engine processes; more than 1 run as happen engine --ha --share --instance eK (e1, e2, ...), sharing the streams, each measured")
	fs.DurationVar(&cfg.interval, "interval", cfg.interval, "the engine's --interval")
	fs.DurationVar(&cfg.warmup, "warmup", cfg.warmup, "how long the engine runs before the window")
	fs.DurationVar(&cfg.measure, "measure", cfg.measure, "the measuring window")
	fs.StringVar(&cfg.happen, "happen", "", "happen binary to run (default: go build ./cmd/happen into a temp dir)")
	fs.Func("engine-arg", "extra flag for happen engine, repeatable (e.g. --engine-arg=--log-level=info)", func(s string) error {
		cfg.engineArgs = append(cfg.engineArgs, s)
		return nil
	})
	fs.StringVar(&cfg.profile, "profile", "", "after the last size, profile the engine in-process and write cpu.pprof and heap.pprof here")
	fs.StringVar(&cfg.output, "o", cfg.output, "table format: text or markdown")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.sizes, cfg.paths = sizes, paths
	return cfg, cfg.validate()
}

func (c config) validate() error {
	switch {
	case len(c.sizes) == 0:
		return errors.New("--consumers: want at least one count")
	case len(c.paths) == 0:
		return errors.New("--paths: want at least one of listing, system")
	case c.streams < 1:
		return fmt.Errorf("--streams %d: want at least 1", c.streams)
	case c.groups < 1:
		return fmt.Errorf("--groups %d: want at least 1", c.groups)
	case c.rate < 0:
		return fmt.Errorf("--rate %v: want 0 or more", c.rate)
	case c.payload < 0:
		return fmt.Errorf("--payload %d: want 0 or more", c.payload)
	case c.pullConns < 1:
		return fmt.Errorf("--pull-conns %d: want at least 1", c.pullConns)
	case c.storage != "file" && c.storage != "memory":
		return fmt.Errorf("--storage %q: want file or memory", c.storage)
	case c.replicas != 1 && !(c.cluster && c.replicas == 3):
		return fmt.Errorf("--replicas %d: want 1, or 3 with --cluster", c.replicas)
	case c.interval < 10*time.Millisecond:
		return fmt.Errorf("--interval %v: want at least 10ms", c.interval)
	case c.warmup < 0:
		return fmt.Errorf("--warmup %v: want 0 or more", c.warmup)
	case c.measure < c.interval:
		return fmt.Errorf("--measure %v: want at least one interval (%v)", c.measure, c.interval)
	case c.output != "text" && c.output != "markdown":
		return fmt.Errorf("-o %q: want text or markdown", c.output)
	case c.engines < 1:
		return fmt.Errorf("--engines %d: want at least 1", c.engines)
	}
	if c.engines > 1 {
		// These are the program's to give each engine.
		for _, a := range c.engineArgs {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			switch name {
			case "ha", "share", "instance", "http":
				return fmt.Errorf("--engine-arg %q: --engines %d sets --%s for each engine", a, c.engines, name)
			}
		}
	}
	for _, p := range c.paths {
		if p != pathListing && p != pathSystem {
			return fmt.Errorf("--paths: %q: want listing or system", p)
		}
	}
	for _, n := range c.sizes {
		if n < c.streams {
			return fmt.Errorf("--consumers %d: want at least one per stream (--streams %d)", n, c.streams)
		}
	}
	return nil
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q: want positive integers separated by commas", v)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// stringList is a comma-separated list of words.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	*l = out
	return nil
}

// progressf reports what the benchmark is doing on stderr: creating 10,000
// consumers takes a while.
func (c config) progressf(format string, args ...any) {
	if c.progress != nil {
		fmt.Fprintf(c.progress, "bench-scale: "+format+"\n", args...)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
