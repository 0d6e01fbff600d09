package engine_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The engine's own server is cut from a three-server cluster while the
// workers and the publisher go on working on the other two. The engine sees
// only its side: it must not report the majority's nodes, but its own
// isolation, on /healthz, in a metric and as engine.isolated; once the
// routes heal it says engine.rejoined and judges again.
//
// Given only its server's URL, the engine learns the others from the
// server and sees them vanish from its connection's pool at the cut.
func TestScenarioEngineIsolatedFromItsCluster(t *testing.T) {
	t.Parallel()
	testEngineIsolated(t, false)
}

// Given every server's URL, the pool never shrinks; the engine knows it is
// cut off once its server has answered for longer than an election that it
// has no JetStream meta leader.
func TestScenarioEngineIsolatedGivenEveryURL(t *testing.T) {
	t.Parallel()
	testEngineIsolated(t, true)
}

func testEngineIsolated(t *testing.T, everyURL bool) {
	c := testutil.RunCutCluster(t, 3)
	const cut = 2 // the engine's server
	// The world's own connections (stream admin, the event subscriber) use
	// the engine's server too: the engine's events during the cut reach
	// only its side.
	w := newWorldOn(t, c.Servers[cut], jetstream.StreamConfig{
		Name: stream, Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.MemoryStorage,
	})
	s0, s1 := c.Servers[0].ClientURL(), c.Servers[1].ClientURL()
	w.addNodeVia(s0, "a-1", "a")
	w.addNodeVia(s0, "a-2", "a")
	w.addNodeVia(s1, "b-1", "b")
	w.addNodeVia(s1, "b-2", "b")
	testutil.StartPublisher(t, s0, "orders", 20)
	reg := prometheus.NewRegistry()
	seen := 1
	if everyURL {
		// Its own server first, and kept first, so it is the one cut.
		w.startEngineOn(c.Servers[cut].ClientURL()+","+s0+","+s1, reg, nats.DontRandomize())
		seen = 3
	} else {
		w.startEngineOn(c.Servers[cut].ClientURL(), reg)
	}
	web := httptest.NewServer(httpapi.Handler(w.eng, reg))
	t.Cleanup(web.Close)
	w.quietFor(3, "healthy cluster")
	if code, body := httpGet(t, web.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d %q before the cut", code, body)
	}

	cutAt := time.Now()
	c.Isolate(cut)
	isoEnv := w.waitEvents(events.TypeEngineIsolated, 1, 30*time.Second)[0]
	iso := decode[events.EngineIsolated](t, isoEnv)
	if iso.ServersSeen != seen || iso.ServersKnown != 3 || iso.Reason == "" {
		t.Fatalf("engine.isolated %+v, want %d of 3 servers seen and a reason", iso, seen)
	}
	if since := time.UnixMilli(iso.Since); since.Before(cutAt.Add(-time.Second)) || since.After(time.Now()) {
		t.Fatalf("isolated since %v, cut at %v", since, cutAt)
	}
	if code, body := httpGet(t, web.URL+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "isolated") {
		t.Fatalf("/healthz %d %q while isolated, want 503 naming the isolation", code, body)
	}
	if v := servedMetric(t, web.URL, "happen_engine_isolated"); v != 1 {
		t.Fatalf("happen_engine_isolated %v while isolated", v)
	}
	if v := servedMetric(t, web.URL, `happen_events_total{type="engine.isolated"}`); v != 1 {
		t.Fatalf("happen_events_total counts %v engine.isolated, want 1", v)
	}
	if st := w.eng.Status(); !st.Isolated || st.Healthy {
		t.Fatalf("status isolated %v healthy %v while isolated", st.Isolated, st.Healthy)
	}
	// Stay cut for longer than a stall takes to be judged (10s at this
	// interval), and a while isolated: the majority's nodes keep working,
	// and nothing may be said about them.
	w.noFalseEventsFor(max(3*time.Second, time.Until(cutAt.Add(13*time.Second))))

	c.Rejoin(cut)
	rejEnv := w.waitEvents(events.TypeEngineRejoined, 1, 30*time.Second)[0]
	rej := decode[events.EngineRejoined](t, rejEnv)
	if rejEnv.Context.CorrelationID == "" || rejEnv.Context.CorrelationID != isoEnv.Context.CorrelationID ||
		rejEnv.Context.CausationID != isoEnv.Context.ID {
		t.Fatalf("engine.rejoined context %+v does not end engine.isolated %+v", rejEnv.Context, isoEnv.Context)
	}
	if rej.Since != iso.Since || rej.IsolatedSeconds < 3 || rej.IsolatedSeconds > time.Since(cutAt).Seconds() || rej.ServersSeen != 3 {
		t.Fatalf("engine.rejoined %+v after engine.isolated %+v", rej, iso)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if code, body := httpGet(t, web.URL+"/healthz"); code != http.StatusOK {
			return fmt.Errorf("/healthz %d %q after rejoining", code, body)
		}
		if v := servedMetric(t, web.URL, "happen_engine_isolated"); v != 0 {
			return fmt.Errorf("happen_engine_isolated %v after rejoining", v)
		}
		return nil
	})
	// Judging resumes once the windows have refilled: rules are evaluated
	// again, and the nodes that worked through the cut are not reported.
	evals := servedMetric(t, web.URL, "happen_rule_evaluations_total")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return servedMetric(t, web.URL, "happen_rule_evaluations_total") > evals && len(w.eng.Status().Nodes) == 4
	}, "rules evaluated again with every node observed after rejoining")
	w.ticks(3)
	w.expectNoFalseEvents()
	if n := len(w.all()); n != 2 {
		t.Fatalf("want only engine.isolated and engine.rejoined, got: %s", summary(w.all()))
	}
}

// startEngineOn is startEngine with the engine connected to url (with
// opts) and its metrics registered in reg.
func (w *world) startEngineOn(url string, reg *prometheus.Registry, opts ...nats.Option) {
	w.t.Helper()
	nc := testutil.Connect(w.t, url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, opts...)...)
	w.startEngineConn(nc, nil, engine.Config{Registry: reg})
}

// expectNoFalseEvents fails if any node or system incident was reported.
func (w *world) expectNoFalseEvents() {
	w.t.Helper()
	for _, e := range w.all() {
		switch e.Type {
		case events.TypeNodeDown, events.TypeNodeUp, events.TypeSystemDown, events.TypeSystemUp:
			w.t.Fatalf("false %s during the engine's isolation: %s", e.Type, summary(w.all()))
		}
	}
}

// noFalseEventsFor watches the events for d, failing at the first node or
// system incident. The engine reports nothing while blind, so there are no
// ticks to count: the wait is bounded polling for a fixed span.
func (w *world) noFalseEventsFor(d time.Duration) {
	w.t.Helper()
	end := time.Now().Add(d)
	testutil.Eventually(w.t, d+5*time.Second, func() bool {
		w.expectNoFalseEvents()
		return time.Now().After(end)
	}, "%v without false events", d)
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// servedMetric is the sample series (a name, with its labels if any, as
// /metrics prints them) served at base/metrics; 0 if it is not there.
func servedMetric(t testing.TB, base, series string) float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}
