package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rulesets"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// profileInProcess runs the engine package in this process, the way
// `happen engine` does (built-in rules, its metrics registered), against
// the running workload, and after a warm-up writes a CPU profile of one
// window and then a heap profile to cfg.profile. The engine has no
// profiling endpoint, and these profiles hold this process's server and
// load generator too: focus on happen/engine when reading them.
func profileInProcess(ctx context.Context, cfg config, url string, n int) error {
	if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
		return fmt.Errorf("profile dir: %w", err)
	}
	nc, err := nats.Connect(url, nats.Name(engineConnName), nats.UserInfo(benchUser, benchPassword), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect the in-process engine: %w", err)
	}
	defer nc.Close()
	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		return fmt.Errorf("built-in ruleset: %w", err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		return fmt.Errorf("built-in ruleset: %w", err)
	}
	log := slog.New(slog.NewTextHandler(cfg.progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng := engine.New(nc, set, engine.Config{Interval: cfg.interval, Registry: prometheus.NewRegistry(), Logger: log})

	ectx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(ectx) }()
	defer func() {
		cancel()
		<-done
	}()

	cfg.progressf("profiling the engine in-process at %d consumers: warm-up %v, then %v", n, cfg.warmup, cfg.measure)
	if err := sleep(ctx, cfg.warmup+3*cfg.interval); err != nil {
		return err
	}
	cpuPath := filepath.Join(cfg.profile, "cpu.pprof")
	f, err := os.Create(cpuPath)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("start cpu profile: %w", err)
	}
	werr := sleep(ctx, cfg.measure)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", cpuPath, err)
	}
	if werr != nil {
		return werr
	}
	heapPath := filepath.Join(cfg.profile, "heap.pprof")
	h, err := os.Create(heapPath)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC() // the heap profile shows what the last GC kept
	if err := pprof.Lookup("heap").WriteTo(h, 0); err != nil {
		h.Close()
		return fmt.Errorf("write %s: %w", heapPath, err)
	}
	if err := h.Close(); err != nil {
		return fmt.Errorf("write %s: %w", heapPath, err)
	}
	cfg.progressf("wrote %s and %s (read with: go tool pprof -top -focus 'happen/engine' %s)", cpuPath, heapPath, cpuPath)
	return nil
}
