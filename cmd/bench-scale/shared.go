package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// shareStatus is what an engine's status says of the sharing: over HTTP
// (/api/status) every engine's own, over NATS the leader's.
type shareStatus struct {
	Role         string   `json:"role"`
	Leader       string   `json:"leader"`
	Members      []string `json:"members"`
	OwnedStreams int      `json:"ownedStreams"`
	Total        int      `json:"total"`
	Error        string   `json:"error"`
}

// shareStatus reads the engine's /api/status. It holds every node the
// engine tracks: read it outside the window.
func (p *engineProc) shareStatus(ctx context.Context) (shareStatus, error) {
	url := "http://" + p.http + "/api/status"
	body, code, err := httpGet(ctx, url)
	if err != nil {
		return shareStatus{}, fmt.Errorf("%s: %w", url, err)
	}
	if code != http.StatusOK {
		return shareStatus{}, fmt.Errorf("%s: HTTP %d", url, code)
	}
	var st shareStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s: %w", url, err)
	}
	return st, nil
}

// sharedEngine is one of the engines sharing the streams, while measured.
type sharedEngine struct {
	name    string
	ep      *engineProc
	stopped bool
	st      shareStatus // its /api/status at readiness, then at the window's end
	base    scrape
	ports   map[int]bool // its sockets' local ports, to find its connections
	p0, p1  procStat
	c0, c1  connStats
	rss     []int64
	fig     engineFigures
}

// measureShared is measureSize's part with cfg.engines engines sharing the
// streams (happen engine --ha --share): it starts them, waits until they
// have settled who samples what and who leads, and measures each over the
// window. r holds what measureSize has set.
func measureShared(ctx context.Context, cfg config, bin, dir string, srv *servers, ld *load, mon *nats.Conn, w *wire,
	prefix string, conns []string, r result, profile bool) (result, error) {
	n := r.consumers
	r.nodes = 0
	plugins := filepath.Join(dir, "no-plugins") // the engines' cost alone, no plugin processes
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return r, fmt.Errorf("plugin dir: %w", err)
	}
	var engines []*sharedEngine
	defer func() {
		for _, e := range engines {
			if !e.stopped {
				_ = e.ep.stop(20 * time.Second)
			}
		}
	}()
	for k := range cfg.engines {
		name := fmt.Sprintf("e%d", k+1)
		port, err := freePort()
		if err != nil {
			return r, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// With --cluster each engine connects to its own server in turn,
		// as engines on separate machines would; srv.url wraps around.
		url := srv.url(0)
		if cfg.cluster {
			url = srv.url(k)
		}
		args := engineArgs(cfg, url, addr, filepath.Join(dir, "engine-"+name), plugins, "--ha", "--share", "--instance", name)
		ep, err := startEngine(bin, addr, args, name+": ", cfg.progress)
		if err != nil {
			return r, fmt.Errorf("engine %s: %w", name, err)
		}
		engines = append(engines, &sharedEngine{name: name, ep: ep})
	}
	if err := waitShared(ctx, cfg, engines, mon, prefix, n); err != nil {
		return r, err
	}
	// As with one engine: the baseline leaves the first ticks out.
	if err := sleep(ctx, 3*cfg.interval); err != nil {
		return r, err
	}
	for _, e := range engines {
		var err error
		if e.base, err = e.ep.scrape(ctx); err != nil {
			return r, fmt.Errorf("engine %s: %w", e.name, err)
		}
	}
	cfg.progressf("%d engines share the streams, %s leads and sees all %d nodes; warming up for %v",
		len(engines), leaderOf(engines), n, cfg.warmup)
	if err := sleep(ctx, cfg.warmup); err != nil {
		return r, err
	}
	exited := func() (bool, error) {
		for _, e := range engines {
			if done, err := e.ep.exited(); done {
				return true, fmt.Errorf("engine %s: %w", e.name, err)
			}
		}
		return false, nil
	}
	if done, err := exited(); done {
		return r, err
	}

	cfg.progressf("measuring for %v", cfg.measure)
	for _, e := range engines {
		var err error
		if e.ports, err = localPorts(e.ep.pid); err != nil {
			return r, err
		}
	}
	m0, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	s0, err := readProc(os.Getpid())
	if err != nil {
		return r, err
	}
	for _, e := range engines {
		if e.p0, err = readProc(e.ep.pid); err != nil {
			return r, err
		}
		if e.c0, err = srv.connsOf(e.ports, conns...); err != nil {
			return r, fmt.Errorf("engine %s: %w", e.name, err)
		}
	}
	pub0, del0 := ld.published.Load(), ld.delivered.Load()
	t := time.NewTicker(time.Second)
	deadline := engines[0].p0.at.Add(cfg.measure)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			t.Stop()
			return r, ctx.Err()
		case <-t.C:
		}
		if done, err := exited(); done {
			t.Stop()
			return r, err
		}
		for _, e := range engines {
			p, err := readProc(e.ep.pid)
			if err != nil {
				t.Stop()
				return r, err
			}
			e.rss = append(e.rss, p.rss)
		}
	}
	t.Stop()
	for _, e := range engines {
		if e.p1, err = readProc(e.ep.pid); err != nil {
			return r, err
		}
		if e.c1, err = srv.connsOf(e.ports, conns...); err != nil {
			return r, fmt.Errorf("engine %s (it reconnected during the window?): %w", e.name, err)
		}
	}
	m1, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	s1, err := readProc(os.Getpid())
	if err != nil {
		return r, err
	}
	pub1, del1 := ld.published.Load(), ld.delivered.Load()
	for _, e := range engines {
		if !slices.Equal(e.c0.conns, e.c1.conns) {
			return r, fmt.Errorf("engine %s's connections changed during the window (%v, then %v): it reconnected", e.name, e.c0.conns, e.c1.conns)
		}
		e.rss = append(e.rss, e.p1.rss)
	}

	for _, e := range engines {
		end, err := e.ep.scrape(ctx)
		if err != nil {
			return r, fmt.Errorf("engine %s: %w", e.name, err)
		}
		p2, err := readProc(e.ep.pid)
		if err != nil {
			return r, err
		}
		e.fig.engineHist, e.fig.engineHistErr = end.since(e.base)
		window := e.p1.at.Sub(e.p0.at)
		e.fig.cpuCores = e.p1.cpuSince(e.p0).Seconds() / window.Seconds()
		e.fig.scrapeTime = p2.at.Sub(e.p1.at)
		e.fig.scrapeCPU = p2.cpuSince(e.p1) - time.Duration(e.fig.cpuCores*float64(p2.at.Sub(e.p1.at)))
	}
	// Who led and who sampled what, at the window's end: the same as at
	// its start, or the figures mix roles.
	before := leaderOf(engines)
	for _, e := range engines {
		if e.st, err = e.ep.shareStatus(ctx); err != nil {
			return r, fmt.Errorf("engine %s: %w", e.name, err)
		}
	}
	if err := checkShared(engines, cfg.engines); err != nil {
		return r, fmt.Errorf("by the window's end: %w", err)
	}
	if after := leaderOf(engines); after != before {
		return r, fmt.Errorf("the leader changed during the window: %s, then %s", before, after)
	}
	// Let the window's last tick finish before counting the events.
	if err := sleep(ctx, cfg.interval); err != nil {
		return r, err
	}
	r.events, r.falseEvents = w.eventCounts()

	// Members first: the leader going first would hand the lead over
	// only to be stopped in turn.
	slices.SortStableFunc(engines, func(a, b *sharedEngine) int {
		return boolInt(a.st.Role == roleLeader) - boolInt(b.st.Role == roleLeader)
	})
	for _, e := range engines {
		e.stopped = true
		if err := e.ep.stop(30 * time.Second); err != nil {
			return r, fmt.Errorf("engine %s: %w", e.name, err)
		}
	}
	slices.SortFunc(engines, func(a, b *sharedEngine) int { return strings.Compare(a.name, b.name) })

	r.window = engines[0].p1.at.Sub(engines[0].p0.at)
	r.ticks = int(math.Round(r.window.Seconds() / cfg.interval.Seconds()))
	ticks := float64(max(r.ticks, 1))
	r.machineCores = (m1 - m0).Seconds() / r.window.Seconds()
	r.selfCores = s1.cpuSince(s0).Seconds() / r.window.Seconds()
	r.cpus = runtime.NumCPU()
	all := 0.0
	memberNodes := 0
	for _, e := range engines {
		f := &e.fig
		f.name, f.role, f.owned = e.name, e.st.Role, e.st.OwnedStreams
		if f.role != roleLeader {
			// A member's status holds only the nodes it samples.
			f.nodes = e.st.Total
			memberNodes += f.nodes
		}
		var sum int64
		for _, v := range e.rss {
			sum += v
			f.rssPeak = max(f.rssPeak, v)
		}
		f.rssAvg = sum / int64(len(e.rss))
		f.hwm = e.p1.hwm
		f.requests = float64(e.c1.inMsgs-e.c0.inMsgs) / ticks
		f.bytesOut = float64(e.c1.inBytes-e.c0.inBytes) / ticks
		f.bytesIn = float64(e.c1.outBytes-e.c0.outBytes) / ticks
		all += f.cpuCores
	}
	for _, e := range engines {
		if e.fig.role == roleLeader {
			// The leader's status holds every node; it samples the rest.
			e.fig.nodes = max(0, n-memberNodes)
		}
		r.engines = append(r.engines, e.fig)
	}
	r.otherCores = max(0, r.machineCores-all-r.selfCores)
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

// roleLeader is the role /api/status gives the engine holding the lease.
const roleLeader = "leader"

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// leaderOf names the engine whose last status says it leads.
func leaderOf(engines []*sharedEngine) string {
	for _, e := range engines {
		if e.st.Role == roleLeader {
			return e.name
		}
	}
	return "none"
}

// checkShared reports whether the engines' statuses agree: exactly one
// leads, the others are members, and each lists all n as members.
func checkShared(engines []*sharedEngine, n int) error {
	var leaders []string
	for _, e := range engines {
		switch e.st.Role {
		case roleLeader:
			leaders = append(leaders, e.name)
		case "member":
		default:
			return fmt.Errorf("engine %s has role %q, want leader or member", e.name, e.st.Role)
		}
		if len(e.st.Members) != n {
			return fmt.Errorf("engine %s lists %d members %v, want %d", e.name, len(e.st.Members), e.st.Members, n)
		}
	}
	if len(leaders) != 1 {
		return fmt.Errorf("%d engines lead %v, want exactly one", len(leaders), leaders)
	}
	return nil
}

// waitShared waits until every engine is healthy, the one leading answers
// happen status over NATS seeing all n nodes with every engine a member,
// and each engine's /api/status agrees (checkShared).
func waitShared(ctx context.Context, cfg config, engines []*sharedEngine, nc *nats.Conn, prefix string, n int) error {
	limit := 3*time.Minute + time.Duration(n)*10*time.Millisecond
	deadline := time.Now().Add(limit)
	lastReport := time.Now()
	var lastFull time.Time
	state := "not healthy yet"
	for {
		for _, e := range engines {
			if done, err := e.ep.exited(); done {
				return fmt.Errorf("engine %s: %w", e.name, err)
			}
		}
		healthy := 0
		for _, e := range engines {
			if e.ep.healthy(ctx) {
				healthy++
			}
		}
		if healthy < len(engines) {
			state = fmt.Sprintf("%d of %d healthy", healthy, len(engines))
		} else if st, err := statusOf(ctx, nc, prefix); err != nil {
			state = "no leader answering happen status: " + err.Error()
		} else if st.Role != roleLeader || st.Total != n || len(st.Members) != len(engines) {
			state = fmt.Sprintf("status answered with role %q, leader %q, %d of %d nodes, members %v", st.Role, st.Leader, st.Total, n, st.Members)
		} else if time.Since(lastFull) >= time.Second {
			// /api/status holds every node: ask each engine at most once a second.
			lastFull = time.Now()
			var ferr error
			for _, e := range engines {
				if e.st, ferr = e.ep.shareStatus(ctx); ferr != nil {
					break
				}
			}
			if ferr == nil {
				ferr = checkShared(engines, len(engines))
			}
			if ferr == nil && leaderOf(engines) != st.Leader {
				ferr = fmt.Errorf("status over NATS names %s the leader, /api/status %s", st.Leader, leaderOf(engines))
			}
			if ferr == nil {
				return nil
			}
			state = ferr.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %d engines did not settle within %v: %s", len(engines), limit, state)
		}
		if time.Since(lastReport) >= 10*time.Second {
			cfg.progressf("  waiting for the engines: %s", state)
			lastReport = time.Now()
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// statusOf asks the engines over NATS for their status, one node's page:
// the leader answers, members do not.
func statusOf(ctx context.Context, nc *nats.Conn, prefix string) (shareStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, prefix+".api.status", []byte(`{"limit":1}`))
	if err != nil {
		return shareStatus{}, err
	}
	var st shareStatus
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		return st, fmt.Errorf("engine status reply: %w", err)
	}
	if st.Error != "" {
		return st, errors.New(st.Error)
	}
	return st, nil
}
