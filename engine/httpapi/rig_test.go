package httpapi_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/engine/webview"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rulesets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// rig is a real engine at work: an in-process JetStream server, the ORDERS
// stream with five nodes in two groups (eu-1..3, us-1..2), each worked on
// its own connection, steady publishing, the engine with the built-in
// rules, and its HTTP endpoints served as `happen engine` serves them.
type rig struct {
	t       *testing.T
	base    string // http://host:port
	srv     *server.Server
	eng     *engine.Engine
	set     *rules.Set
	workers map[string]*testutil.Worker
}

var rigNodes = []struct{ id, group string }{
	{"eu-1", "eu"}, {"eu-2", "eu"}, {"eu-3", "eu"}, {"us-1", "us"}, {"us-2", "us"},
}

func startRig(t *testing.T, interval time.Duration) *rig {
	t.Helper()
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	js := testutil.JetStream(t, testutil.Connect(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, srv: srv, workers: map[string]*testutil.Worker{}}
	for _, n := range rigNodes {
		if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{
			Durable: n.id, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
			Metadata: map[string]string{"happen.group": n.group},
		}); err != nil {
			t.Fatal(err)
		}
		r.workers[n.id] = testutil.StartWorker(t, url, "ORDERS", n.id)
	}
	testutil.StartPublisher(t, url, "orders", 20)

	rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.set, err = rules.NewSet(rs); err != nil {
		t.Fatal(err)
	}
	nc := testutil.Connect(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A history point every interval: sparklines fill within the test.
	reg := prometheus.NewRegistry()
	r.eng = engine.New(nc, r.set, engine.Config{Interval: interval, HistoryStep: interval, Logger: log, Instance: "test", Registry: reg})
	runCtx, stop := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() {
		defer close(engDone)
		if err := r.eng.Run(runCtx); err != nil {
			t.Errorf("engine run: %v", err)
		}
	}()
	addr, httpDone, err := httpapi.Serve(runCtx, "127.0.0.1:0", httpapi.Handler(r.eng, reg), log)
	if err != nil {
		t.Fatal(err)
	}
	r.base = "http://" + addr.String()
	t.Cleanup(func() {
		stop()
		<-engDone
		// Open streams end with the server's context: shutdown is not
		// held up by a browser still watching.
		select {
		case err := <-httpDone:
			if err != nil {
				t.Errorf("http server: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("http server did not shut down within 3s")
		}
	})
	testutil.Eventually(t, 15*time.Second, func() bool { return len(r.eng.Status().Nodes) == len(rigNodes) },
		"engine sees the %d nodes", len(rigNodes))
	return r
}

// nodeState is the engine's state of node id, and its pattern.
func (r *rig) nodeState(id string) (string, string) {
	for _, n := range r.eng.Status().Nodes {
		if n.ID == id {
			return n.State, n.Pattern
		}
	}
	return "", ""
}

// judged waits until the engine can judge every node: warmed up, with
// cadences learned, so a fault is detected as one.
func (r *rig) judged() {
	r.t.Helper()
	testutil.Eventually(r.t, 30*time.Second, func() bool {
		st := r.eng.Status()
		for _, n := range st.Nodes {
			if n.Warming || !n.CadenceLearned {
				return false
			}
		}
		return len(st.Nodes) == len(rigNodes)
	}, "every node judged")
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// The engine feeds the web view; Handler serves the view only for a
// source that does, so a change to either must keep this true.
var _ webview.Source = (*engine.Engine)(nil)
