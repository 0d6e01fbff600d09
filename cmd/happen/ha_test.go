package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
		return leader, leader != "" && owned >= streams
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
