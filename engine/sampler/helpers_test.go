package sampler_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// env is one real JetStream server, a client, and a started sampler.
type env struct {
	t    testing.TB
	srv  *server.Server
	opts *server.Options
	nc   *nats.Conn
	js   jetstream.JetStream
	s    *sampler.Sampler
	logs *testutil.LogBuffer
}

func newEnv(t testing.TB, cfg sampler.Config, natsOpts ...nats.Option) *env {
	t.Helper()
	opts := testutil.ServerOptions(t)
	srv := testutil.StartServer(t, opts)
	nc := testutil.Connect(t, srv.ClientURL(), natsOpts...)
	js := testutil.JetStream(t, nc)
	logs := &testutil.LogBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := sampler.New(nc, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		cancel()
	})
	return &env{t: t, srv: srv, opts: opts, nc: nc, js: js, s: s, logs: logs}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) sample() flow.Snapshot {
	e.t.Helper()
	snap, err := e.s.Sample(e.ctx())
	if err != nil {
		e.t.Fatalf("sample: %v", err)
	}
	return snap
}

func (e *env) stream(cfg jetstream.StreamConfig) jetstream.Stream {
	e.t.Helper()
	if cfg.Subjects == nil {
		cfg.Subjects = []string{strings.ToLower(cfg.Name) + ".>"}
	}
	st, err := e.js.CreateStream(e.ctx(), cfg)
	if err != nil {
		e.t.Fatalf("create stream %s: %v", cfg.Name, err)
	}
	return st
}

func (e *env) consumer(stream string, cfg jetstream.ConsumerConfig) jetstream.Consumer {
	e.t.Helper()
	c, err := e.js.CreateOrUpdateConsumer(e.ctx(), stream, cfg)
	if err != nil {
		e.t.Fatalf("create consumer %s on %s: %v", cfg.Durable, stream, err)
	}
	return c
}

func (e *env) publish(subject string, n int) {
	e.t.Helper()
	for i := range n {
		if _, err := e.js.Publish(e.ctx(), subject, fmt.Appendf(nil, "m%d", i)); err != nil {
			e.t.Fatalf("publish %s: %v", subject, err)
		}
	}
}

func find(snap flow.Snapshot, stream, consumer string) (flow.ConsumerSample, bool) {
	for _, c := range snap.Consumers {
		if c.Key.Stream == stream && c.Key.Consumer == consumer {
			return c, true
		}
	}
	return flow.ConsumerSample{}, false
}

func findStream(snap flow.Snapshot, name string) (flow.StreamSample, bool) {
	for _, s := range snap.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return flow.StreamSample{}, false
}

func keys(snap flow.Snapshot) []string {
	out := make([]string, 0, len(snap.Consumers))
	for _, c := range snap.Consumers {
		out = append(out, c.Key.String())
	}
	return out
}

// relay answers JetStream API requests under prefix by forwarding them to
// the real API, unless intercept handles the request first (given the
// subject without prefix, e.g. ".CONSUMER.LIST.ORDERS"); intercept returning
// true means the request gets no answer.
func relay(t testing.TB, url, prefix string, intercept func(rest string) (swallow bool)) {
	t.Helper()
	nc := testutil.Connect(t, url)
	_, err := nc.Subscribe(prefix+".>", func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, prefix)
		if intercept != nil && intercept(rest) {
			return
		}
		resp, err := nc.Request("$JS.API"+rest, m.Data, 10*time.Second)
		if err != nil {
			t.Logf("relay %s: %v", m.Subject, err)
			return
		}
		// Headers too: a direct get answers in them.
		_ = m.RespondMsg(&nats.Msg{Data: resp.Data, Header: resp.Header})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
