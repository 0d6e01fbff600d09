package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type roleStatus struct {
	Healthy bool    `json:"healthy"`
	Role    string  `json:"role"`
	Leader  string  `json:"leader"`
	Age     float64 `json:"leaseAgeSeconds"`
}

func (p *engineProc) role(t *testing.T) roleStatus {
	t.Helper()
	var st roleStatus
	if code, body := p.get("/api/status"); code == 200 {
		_ = json.Unmarshal([]byte(body), &st)
	}
	return st
}

// Two `happen engine --ha` processes against one server: one leads, the
// other stands by (healthy, naming it). SIGKILL the leader and the other
// takes over within two lease periods.
func TestEngineHAProcesses(t *testing.T) {
	srv := testutil.RunServer(t)
	a := startEngineAt(t, srv.ClientURL(), nil, "--ha", "--lease", "1s", "--instance", "a")
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := a.role(t)
		return st.Healthy && st.Role == "leader" && st.Leader == "a"
	}, "a leads")
	b := startEngineAt(t, srv.ClientURL(), nil, "--ha", "--lease", "1s", "--instance", "b")
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := b.role(t)
		code, _ := b.get("/healthz")
		return code == 200 && st.Healthy && st.Role == "standby" && st.Leader == "a" && st.Age < 2
	}, "b stands by, healthy, naming a")
	if _, body := b.get("/healthz"); !strings.HasPrefix(body, "ok standby · leader a, lease renewed ") {
		t.Errorf("b's /healthz says %q, want its role and the leader", body)
	}
	_, metrics := b.get("/metrics")
	for _, want := range []string{"happen_leader 0", "happen_lease_elections_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("b's /metrics lacks %q", want)
		}
	}

	killed := time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := b.role(t)
		return st.Role == "leader" && st.Leader == "b"
	}, "b takes over")
	if d := time.Since(killed); d > 3*time.Second {
		t.Fatalf("takeover took %v after SIGKILL, want within about two 1s lease periods", d)
	}
	_, metrics = b.get("/metrics")
	if !strings.Contains(metrics, "happen_leader 1") || !strings.Contains(metrics, "happen_lease_elections_total 1") {
		t.Errorf("b's /metrics after the takeover lack happen_leader 1 or happen_lease_elections_total 1")
	}
}

type shareStatus struct {
	roleStatus
	Members []string `json:"members"`
	Owned   int      `json:"ownedStreams"`
	Total   int      `json:"total"`
}

func (p *engineProc) share(t *testing.T) shareStatus {
	t.Helper()
	var st shareStatus
	if code, body := p.get("/api/status"); code == 200 {
		_ = json.Unmarshal([]byte(body), &st)
	}
	return st
}

// Three `happen engine --ha --share` processes share twelve streams: one
// leads and sees every node, the others are members, each sampling some
// streams. SIGKILL a member and the other two share everything within two
// lease periods, the leader still seeing every node.
func TestEngineShareProcesses(t *testing.T) {
	if _, stderr, code := run(t, nil, "engine", "--share"); code != 2 || !strings.Contains(stderr, "--share needs --ha") {
		t.Fatalf("--share without --ha: exit %d, %q", code, stderr)
	}
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const streams = 12
	for i := range streams {
		name := fmt.Sprintf("S%d", i)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	procs := map[string]*engineProc{}
	for _, id := range []string{"a", "b", "c"} {
		procs[id] = startEngineAt(t, srv.ClientURL(), nil, "--ha", "--share", "--lease", "1s", "--instance", id)
	}
	settled := func(ids ...string) (leader string, ok bool) {
		owned := 0
		for _, id := range ids {
			st := procs[id].share(t)
			if !st.Healthy || !slices.Equal(st.Members, ids) {
				return "", false
			}
			switch st.Role {
			case "leader":
				if leader != "" || st.Total != streams {
					return "", false
				}
				leader = id
			case "member":
			default:
				return "", false
			}
			owned += st.Owned
		}
		// Every stream owned once, the engines' own buckets and summaries
		// included.
		all := 0
		names := js.StreamNames(ctx)
		for range names.Name() {
			all++
		}
		return leader, leader != "" && names.Err() == nil && owned == all
	}
	var leader string
	testutil.Eventually(t, 30*time.Second, func() bool {
		var ok bool
		leader, ok = settled("a", "b", "c")
		return ok
	}, "one leader seeing every node, three members")
	var gone string
	var rest []string
	for _, id := range []string{"a", "b", "c"} {
		if id != leader && gone == "" {
			gone = id
			continue
		}
		rest = append(rest, id)
	}
	if _, body := procs[gone].get("/healthz"); !strings.HasPrefix(body, "ok member · leader "+leader) || !strings.Contains(body, "3 engines share the streams") {
		t.Errorf("%s's /healthz says %q, want member, the leader and the sharing", gone, body)
	}
	_, metrics := procs[gone].get("/metrics")
	for _, want := range []string{"happen_members 3", "happen_reassignments_total", "happen_owned_streams"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("%s's /metrics lacks %q", gone, want)
		}
	}
	killed := time.Now()
	if err := procs[gone].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		l, ok := settled(rest...)
		return ok && l == leader
	}, "%v share everything after %s was killed", rest, gone)
	if d := time.Since(killed); d > 3*time.Second {
		t.Fatalf("%s's streams taken over %v after SIGKILL, want within about two 1s lease periods", gone, d)
	}
}

// Three `happen engine --ha` processes with the built-in rules and the
// alerting plugin posting to a webhook. A node fails; then the leader is
// SIGKILLed 20 times in a row, a fresh engine started each time so three
// take part. Over all of it: one node.down on NATS and one POST of it, and
// when the node is back one node.up and one POST of it, under the same
// correlationId; every takeover within two lease periods.
func TestEngineHATwentySIGKILLs(t *testing.T) {
	if testing.Short() {
		t.Skip("20 leader kills take about a minute")
	}
	hook := newWebhook(t)
	posted := func(typ string) int { return len(hook.ofType(typ)) }

	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	nc := testutil.Connect(t, url)
	var evMu sync.Mutex
	var evs []events.Envelope
	if _, err := nc.Subscribe(events.DefaultPrefix+".>", func(m *nats.Msg) {
		var env events.Envelope
		if json.Unmarshal(m.Data, &env) == nil && (env.Type == events.TypeNodeDown || env.Type == events.TypeNodeUp) {
			evMu.Lock()
			evs = append(evs, env)
			evMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	ofType := func(typ string) []events.Envelope {
		evMu.Lock()
		defer evMu.Unlock()
		var out []events.Envelope
		for _, e := range evs {
			if e.Type == typ {
				out = append(out, e)
			}
		}
		return out
	}
	wa := ordersWorkload(t, url)

	env := []string{"HAPPEN_ALERT_WEBHOOK=" + hook.URL, "HAPPEN_ALERT_FORMAT=json"}
	n := 0
	start := func() *engineProc {
		n++
		return startEngineAt(t, url, env, "--ha", "--lease", "1s", "--instance", fmt.Sprintf("e%d", n))
	}
	live := []*engineProc{start(), start(), start()}
	leaderOf := func() (int, *engineProc) {
		count, idx := 0, -1
		for i, p := range live {
			if p.role(t).Role == "leader" {
				count++
				idx = i
			}
		}
		if count != 1 {
			return count, nil
		}
		return 1, live[idx]
	}
	var leader *engineProc
	testutil.Eventually(t, 30*time.Second, func() bool {
		var c int
		c, leader = leaderOf()
		return c == 1
	}, "one leader among three")

	wa.Kill()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(ofType(events.TypeNodeDown)) > 0 && posted(events.TypeNodeDown) > 0 },
		"node.down published and posted")
	corr := ofType(events.TypeNodeDown)[0].Context.CorrelationID

	var longest time.Duration
	for i := range 20 {
		killed := time.Now()
		if err := leader.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		var rest []*engineProc
		for _, p := range live {
			if p != leader {
				rest = append(rest, p)
			}
		}
		live = append(rest, start())
		testutil.Eventually(t, 10*time.Second, func() bool {
			var c int
			c, leader = leaderOf()
			return c == 1
		}, "a leader after kill %d", i+1)
		longest = max(longest, time.Since(killed))
		if d, p := len(ofType(events.TypeNodeDown)), posted(events.TypeNodeDown); d != 1 || p != 1 {
			t.Fatalf("after kill %d: %d node.down published, %d posted; want one each", i+1, d, p)
		}
	}
	t.Logf("20 SIGKILLs of the leader, the longest takeover %v (lease 1s)", longest.Round(10*time.Millisecond))
	// Polled every few milliseconds by HTTP after the kill, so the bound
	// holds a margin for the poll and the new leader's first tick.
	if longest > 2*time.Second+500*time.Millisecond {
		t.Fatalf("a takeover took %v, want within two lease periods (2s)", longest)
	}

	wa.Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(ofType(events.TypeNodeUp)) > 0 && posted(events.TypeNodeUp) > 0 },
		"node.up published and posted")
	// A late duplicate would come within a tick or two: wait for three of
	// the leader's.
	sampledAt := func() time.Time {
		var st struct {
			At time.Time `json:"at"`
		}
		if code, body := leader.get("/api/status"); code == 200 {
			_ = json.Unmarshal([]byte(body), &st)
		}
		return st.At
	}
	from := sampledAt()
	testutil.Eventually(t, 15*time.Second, func() bool { return sampledAt().Sub(from) >= 3*time.Second },
		"three more ticks of the leader")
	ups, downs := ofType(events.TypeNodeUp), ofType(events.TypeNodeDown)
	if len(ups) != 1 || len(downs) != 1 || ups[0].Context.CorrelationID != corr {
		t.Fatalf("want one node.down and one node.up under %s, got %d and %d", corr, len(downs), len(ups))
	}
	if d, u := posted(events.TypeNodeDown), posted(events.TypeNodeUp); d != 1 || u != 1 {
		t.Fatalf("the alerting plugin posted node.down %d times and node.up %d times, want once each", d, u)
	}
}
