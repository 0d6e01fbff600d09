package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// world is one scenario: a real JetStream server, a stream, workers each on
// their own connection, a publisher, the engine, and every event it emits.
type world struct {
	t    testing.TB
	srv  *server.Server
	opts *server.Options
	url  string
	js   jetstream.JetStream

	mu      sync.Mutex
	workers map[string]*testutil.Worker
	events  []events.Envelope

	eng    *engine.Engine
	cancel context.CancelFunc
	done   chan struct{}
}

const stream = "ORDERS"

func newWorld(t testing.TB) *world {
	t.Helper()
	opts := testutil.ServerOptions(t)
	srv := testutil.StartServer(t, opts)
	w := newWorldOn(t, srv, jetstream.StreamConfig{Name: stream, Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
	w.opts = opts
	return w
}

// newWorldOn is a world whose clients use srv, which may be one server of
// a cluster, with the ORDERS stream made from cfg.
func newWorldOn(t testing.TB, srv *server.Server, cfg jetstream.StreamConfig) *world {
	t.Helper()
	return newWorldAt(t, srv, srv.ClientURL(), cfg)
}

// newWorldAt is newWorldOn reaching srv through url, which may carry a
// user and password.
func newWorldAt(t testing.TB, srv *server.Server, url string, cfg jetstream.StreamConfig) *world {
	t.Helper()
	w := &world{t: t, srv: srv, url: url, workers: map[string]*testutil.Worker{}}
	nc := testutil.Connect(t, w.url)
	js := testutil.JetStream(t, nc)
	w.js = js
	// A new cluster may still be electing its meta leader.
	testutil.CheckFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, cfg)
		return err
	})
	sub := testutil.Connect(t, w.url)
	if _, err := sub.Subscribe("happen.events.>", func(m *nats.Msg) {
		var env events.Envelope
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Errorf("event on %s is not an envelope: %v: %s", m.Subject, err, m.Data)
			return
		}
		if m.Subject != "happen.events."+env.Type {
			t.Errorf("event %s published on %s", env.Type, m.Subject)
		}
		w.mu.Lock()
		w.events = append(w.events, env)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	return w
}

// addNode creates a durable consumer for node id in group and starts a
// worker for it.
func (w *world) addNode(id, group string) *testutil.Worker {
	w.t.Helper()
	return w.addNodeVia(w.url, id, group)
}

// addNodeVia is addNode with the worker connecting to url, such as a proxy
// that a test can cut.
func (w *world) addNodeVia(url, id, group string) *testutil.Worker {
	w.t.Helper()
	return w.addNodeOn(url, stream, id, group)
}

// addNodeOn is addNodeVia for a consumer of another stream.
func (w *world) addNodeOn(url, stream, id, group string) *testutil.Worker {
	w.t.Helper()
	w.addConsumer(stream, id, group)
	return w.track(id, testutil.StartWorker(w.t, url, stream, id))
}

// startEngine runs the engine with the built-in rules (or set) at a 1s
// interval, the default the targets are stated for.
func (w *world) startEngine(set *rules.Set) { w.startEngineConfig(set, engine.Config{}) }

// startEngineConfig is startEngine with cfg's fields (a registry, a
// recorder...); zero Interval, Logger and Instance take the scenarios'
// defaults. stopped, if given, runs once the engine has returned.
func (w *world) startEngineConfig(set *rules.Set, cfg engine.Config, stopped ...func()) {
	w.t.Helper()
	nc := testutil.Connect(w.t, w.url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	w.startEngineConn(nc, set, cfg, stopped...)
}

// startEngineConn is startEngineConfig on a connection of the caller's.
func (w *world) startEngineConn(nc *nats.Conn, set *rules.Set, cfg engine.Config, stopped ...func()) {
	w.t.Helper()
	if set == nil {
		set = defaultSet(w.t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{w.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if os.Getenv("HAPPEN_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Instance == "" {
		cfg.Instance = "test"
	}
	w.eng = engine.New(nc, set, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.cancel, w.done = cancel, done
	go func() {
		defer close(done)
		if err := w.eng.Run(ctx); err != nil {
			w.t.Errorf("engine run: %v", err)
		}
		for _, f := range stopped {
			f()
		}
	}()
	w.t.Cleanup(func() {
		cancel()
		<-done
	})
	// Ready once it has seen every node.
	testutil.Eventually(w.t, 15*time.Second, func() bool {
		return len(w.eng.Status().Nodes) >= len(w.workers)
	}, "engine sees %d nodes", len(w.workers))
}

// stopEngine stops the engine as SIGTERM would.
func (w *world) stopEngine() {
	w.cancel()
	<-w.done
}

func defaultSet(t testing.TB) *rules.Set {
	t.Helper()
	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		t.Fatalf("built-in rules: %v", err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// ticks waits until the engine has completed n more ticks.
func (w *world) ticks(n int) {
	w.t.Helper()
	w.ticksUnless(n, nil)
}

// ticksUnless is ticks, returning early once stop (if not nil) holds.
func (w *world) ticksUnless(n int, stop func() bool) {
	w.t.Helper()
	start := w.eng.Status().At
	testutil.Eventually(w.t, time.Duration(n+10)*2*time.Second, func() bool {
		if stop != nil && stop() {
			return true
		}
		return w.eng.Status().At.Sub(start) >= time.Duration(n)*time.Second-100*time.Millisecond
	}, "%d engine ticks", n)
}

// expectEvents fails the test unless exactly n events were emitted so far;
// what says what was wanted.
func (w *world) expectEvents(n int, what string) {
	w.t.Helper()
	if evs := w.all(); len(evs) != n {
		w.t.Fatalf("%s: got %d events: %s", what, len(evs), summary(evs))
	}
}

// waitNodeDown waits for the first node.down and returns it decoded.
func (w *world) waitNodeDown(within time.Duration) events.NodeDown {
	w.t.Helper()
	return decode[events.NodeDown](w.t, w.waitEvents(events.TypeNodeDown, 1, within)[0])
}

// waitSystemDown waits for the first system.down and returns it decoded.
func (w *world) waitSystemDown(within time.Duration) events.SystemDown {
	w.t.Helper()
	return decode[events.SystemDown](w.t, w.waitEvents(events.TypeSystemDown, 1, within)[0])
}

// decode is e's payload as a T, failing the test if it is not one.
func decode[T any](t testing.TB, e events.Envelope) T {
	t.Helper()
	var p T
	if err := e.Decode(&p); err != nil {
		t.Fatalf("%s payload: %v: %s", e.Type, err, e.Payload)
	}
	return p
}

func (w *world) all() []events.Envelope {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Envelope(nil), w.events...)
}

func (w *world) ofType(typ string) []events.Envelope {
	var out []events.Envelope
	for _, e := range w.all() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitEvents waits until at least n events of typ arrived, and returns them.
func (w *world) waitEvents(typ string, n int, within time.Duration) []events.Envelope {
	w.t.Helper()
	testutil.Eventually(w.t, within, func() bool { return len(w.ofType(typ)) >= n },
		"%d %s events; got: %s", n, typ, summary(w.all()))
	return w.ofType(typ)
}

func summary(evs []events.Envelope) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %s", e.Type, e.Payload)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func nodeDowns(t testing.TB, evs []events.Envelope) []events.NodeDown {
	t.Helper()
	out := make([]events.NodeDown, len(evs))
	for i := range evs {
		out[i] = decode[events.NodeDown](t, evs[i])
	}
	return out
}

func ids(nd []events.NodeDown) []string {
	out := make([]string, len(nd))
	for i, d := range nd {
		out[i] = d.NodeID
	}
	sort.Strings(out)
	return out
}

func (w *world) publish(rate int) *testutil.Publisher {
	return testutil.StartPublisher(w.t, w.url, "orders", rate)
}

// burst publishes n messages at once and waits for the server to take them.
func (w *world) burst(n int) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := w.js.PublishAsync(fmt.Sprintf("orders.b%d", i%10), []byte(`{}`)); err != nil {
			w.t.Fatal(err)
		}
	}
	select {
	case <-w.js.PublishAsyncComplete():
	case <-ctx.Done():
		w.t.Fatal("burst not acknowledged")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
