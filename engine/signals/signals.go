// Package signals listens to what the NATS servers say about themselves,
// as evidence beside the flow the sampler reads: which servers went away
// (a shutdown or lame duck announcement, or heartbeats that stopped), which
// routes between servers were lost, and which consumers had a new leader
// elected.
//
// Server events are published in the system account, so they are heard
// only through a connection with system access; leader elections are
// JetStream advisories published in the watched account itself. A Watcher
// works with either or both; without system access the rules see
// system.serverSignals false and judge from flow alone.
//
// Every server sends a STATSZ heartbeat, every 10s once it has run a while;
// after it starts the spacing doubles from 250ms up to that, and changes
// to its links send extra ones in between, so a young server's gaps say
// little about its next. A server is lost when it misses three heartbeats:
// silent for three times the longer of 10s and the longest spacing the
// engine has seen from it (a loaded server may be late), so one late
// message is not a loss. A server that announced its shutdown is down at
// once. Either is up again as soon as any heartbeat of a server of that
// name arrives (a restarted server has a new id but keeps its name).
package signals

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/nats-io/nats.go"
)

// Subjects the servers publish on (nats-server events.go, jetstream_api.go).
const (
	subjStatsz    = "$SYS.SERVER.*.STATSZ"
	subjShutdown  = "$SYS.SERVER.*.SHUTDOWN"
	subjLameDuck  = "$SYS.SERVER.*.LAMEDUCK"
	subjPingStats = "$SYS.REQ.SERVER.PING.STATSZ"
	prefixElected = "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED"
)

// Heartbeats a server must miss to be lost, at the longer of its own
// longest spacing and heartbeatEvery, nats-server's settled spacing.
const (
	missedBeats    = 3
	heartbeatEvery = 10 * time.Second
)

// Retain is how long an election, or a lost server, is remembered: the
// flap window of the built-in rules, beyond which a past failover explains
// no stall. A server gone longer is forgotten (it was scaled down or
// renamed), and so are routes to it.
const Retain = 5 * time.Minute

// Config tunes a Watcher. The zero value is usable.
type Config struct {
	Logger *slog.Logger
	// Now is the clock; default time.Now (tests drive their own).
	Now func() time.Time
}

// Watcher gathers server signals. Start it, Read it on every tick, and it
// stops with Start's context.
type Watcher struct {
	sys, app *nats.Conn
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	servers map[string]*server // by server name
	elected map[flow.NodeKey]flow.Election
}

type server struct {
	heard     time.Time // last heartbeat (or announcement)
	spacing   time.Duration
	announced time.Time // shutdown or lame duck announced and not heard since
	lostAt    time.Time // when Read first found it lost
	routes    map[string]time.Time
	current   map[string]bool
}

// New returns a Watcher reading server events through sys (a connection
// with system access; nil for none) and leader elections through app (the
// watched account's connection; nil for none).
func New(sys, app *nats.Conn, cfg Config) *Watcher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Watcher{
		sys: sys, app: app, log: cfg.Logger, now: cfg.Now,
		servers: map[string]*server{},
		elected: map[flow.NodeKey]flow.Election{},
	}
}

// Start subscribes and asks every server for its statistics once, so
// servers are known before their first heartbeat. The subscriptions end
// with ctx. It fails if a subscription cannot be made.
func (w *Watcher) Start(ctx context.Context) error {
	var subs []*nats.Subscription
	fail := func(subj string, err error) error {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		return fmt.Errorf("subscribe to %s: %w", subj, err)
	}
	sub := func(nc *nats.Conn, subj string, h nats.MsgHandler) error {
		s, err := nc.Subscribe(subj, h)
		if err != nil {
			return fail(subj, err)
		}
		subs = append(subs, s)
		return nil
	}
	if w.sys != nil {
		if err := sub(w.sys, subjStatsz, func(m *nats.Msg) { w.statsz(m.Data) }); err != nil {
			return err
		}
		for _, subj := range []string{subjShutdown, subjLameDuck} {
			if err := sub(w.sys, subj, func(m *nats.Msg) { w.announce(m.Subject, m.Data) }); err != nil {
				return err
			}
		}
		// Replies to the ping come to an inbox, one per server.
		inbox := w.sys.NewRespInbox()
		if err := sub(w.sys, inbox, func(m *nats.Msg) { w.statsz(m.Data) }); err != nil {
			return err
		}
		if err := w.sys.PublishRequest(subjPingStats, inbox, nil); err != nil {
			return fail(subjPingStats, err)
		}
	}
	if w.app != nil {
		if err := sub(w.app, prefixElected+".*.*", func(m *nats.Msg) { w.election(m.Subject, m.Data) }); err != nil {
			return err
		}
	}
	for _, nc := range []*nats.Conn{w.sys, w.app} {
		if nc != nil && nc.IsConnected() {
			fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := nc.FlushWithContext(fctx); err != nil && !errors.Is(err, context.Canceled) {
				w.log.Warn("server signal subscriptions not yet confirmed by the server", "error", err)
			}
			cancel()
		}
	}
	go func() {
		<-ctx.Done()
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	return nil
}

// serverInfo is the part of every server event's "server" object used here.
type serverInfo struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

func (si serverInfo) key() string { return cmp.Or(si.Name, si.ID) }

func (w *Watcher) statsz(data []byte) {
	var m struct {
		Server serverInfo `json:"server"`
		Stats  struct {
			Routes []struct {
				Name string `json:"name"`
			} `json:"routes"`
		} `json:"statsz"`
		// A ping reply wraps the same in "data" with "server" beside it.
		Data *struct {
			Routes []struct {
				Name string `json:"name"`
			} `json:"routes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Server.key() == "" {
		w.log.Debug("ignoring malformed server statistics", "error", err)
		return
	}
	routes := m.Stats.Routes
	if m.Data != nil {
		routes = m.Data.Routes
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.server(m.Server.key())
	if !s.heard.IsZero() && s.announced.IsZero() && s.lostAt.IsZero() {
		s.spacing = max(s.spacing, now.Sub(s.heard))
	}
	s.heard, s.announced, s.lostAt = now, time.Time{}, time.Time{}
	clear(s.current)
	for _, r := range routes {
		if r.Name == "" {
			continue // a route not yet named by its first INFO
		}
		s.current[r.Name] = true
		s.routes[r.Name] = now
	}
}

func (w *Watcher) announce(subject string, data []byte) {
	var m struct {
		Server serverInfo `json:"server"`
	}
	// The payload is the server's info; older servers sent it bare.
	if err := json.Unmarshal(data, &m); err != nil || m.Server.key() == "" {
		var bare serverInfo
		if err2 := json.Unmarshal(data, &bare); err2 != nil || bare.key() == "" {
			w.log.Debug("ignoring malformed server announcement", "subject", subject, "error", errors.Join(err, err2))
			return
		}
		m.Server = bare
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.server(m.Server.key())
	if s.announced.IsZero() {
		s.announced = now
	}
	w.log.Info("server announced it is going away", "server", m.Server.key(), "subject", subject)
}

func (w *Watcher) server(name string) *server {
	s := w.servers[name]
	if s == nil {
		s = &server{routes: map[string]time.Time{}, current: map[string]bool{}}
		w.servers[name] = s
	}
	return s
}

func (w *Watcher) election(subject string, data []byte) {
	rest, ok := strings.CutPrefix(subject, prefixElected+".")
	stream, consumer, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || stream == "" || consumer == "" || strings.Contains(consumer, ".") {
		w.log.Debug("ignoring leader election with malformed subject", "subject", subject)
		return
	}
	var m struct {
		Stream   string `json:"stream"`
		Consumer string `json:"consumer"`
		Leader   string `json:"leader"`
	}
	if err := json.Unmarshal(data, &m); err != nil || (m.Stream != "" && m.Stream != stream) || (m.Consumer != "" && m.Consumer != consumer) {
		w.log.Debug("ignoring leader election that is malformed or disagrees with its subject", "subject", subject, "error", err)
		return
	}
	key := flow.NodeKey{Stream: stream, Consumer: consumer}
	now := w.now()
	w.mu.Lock()
	w.elected[key] = flow.Election{Key: key, Leader: m.Leader, At: now}
	w.mu.Unlock()
}

// Read returns the signals as of now, and forgets what is older than
// Retain.
func (w *Watcher) Read() flow.Signals {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	sig := flow.Signals{Servers: w.sys != nil}
	down := map[string]bool{}
	for name, s := range w.servers {
		switch {
		case !s.announced.IsZero():
			heard := s.heard
			if heard.IsZero() || heard.After(s.announced) {
				heard = s.announced
			}
			sig.Down = append(sig.Down, flow.ServerDown{Name: name, Since: s.announced, LastHeard: heard, Announced: true})
		case !s.heard.IsZero() && now.Sub(s.heard) > missedBeats*max(s.spacing, heartbeatEvery):
			if s.lostAt.IsZero() {
				s.lostAt = now
				w.log.Warn("server lost: its heartbeats stopped", "server", name, "lastHeard", s.heard, "spacing", s.spacing)
			}
			sig.Down = append(sig.Down, flow.ServerDown{Name: name, Since: s.lostAt, LastHeard: s.heard})
		default:
			continue
		}
		down[name] = true
		if since := sig.Down[len(sig.Down)-1].Since; now.Sub(since) > Retain {
			delete(w.servers, name)
			sig.Down = sig.Down[:len(sig.Down)-1]
		}
	}
	for name, s := range w.servers {
		if down[name] {
			continue
		}
		for peer, seen := range s.routes {
			switch {
			case s.current[peer]:
			case now.Sub(seen) > Retain:
				delete(s.routes, peer)
			case !down[peer]:
				sig.RoutesLost++ // a peer that is up, but not reached
			}
		}
	}
	slices.SortFunc(sig.Down, func(a, b flow.ServerDown) int { return cmp.Compare(a.Name, b.Name) })
	for k, el := range w.elected {
		if now.Sub(el.At) > Retain {
			delete(w.elected, k)
			continue
		}
		sig.Elected = append(sig.Elected, el)
	}
	slices.SortFunc(sig.Elected, func(a, b flow.Election) int {
		if c := cmp.Compare(a.Key.Stream, b.Key.Stream); c != 0 {
			return c
		}
		return cmp.Compare(a.Key.Consumer, b.Key.Consumer)
	})
	return sig
}
