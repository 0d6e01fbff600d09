package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
)

type pageJSON struct {
	Tick    uint64
	Total   int
	Offset  int
	Sort    string
	History struct {
		Step   float64
		Points int
	}
	Nodes []struct {
		ID, Group, State, Pattern string
		MessagesWaiting           int
		StallThreshold            float64
		Points                    []*float64
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if v, ok := v.(*string); ok {
			*v = string(b)
		}
		return resp.StatusCode
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v: %s", url, err, b)
	}
	return resp.StatusCode
}

func (p pageJSON) ids() []string {
	var out []string
	for _, n := range p.Nodes {
		out = append(out, n.ID+"@"+n.Group)
	}
	return out
}

// The paged node list and the stream against a real engine: the list
// pages, sorts and filters what the engine sees, a killed worker comes
// first as down, the stream sends one summary per tick with the new
// events, and a ruleset change shows as the last reload result.
func TestWebViewOnEngine(t *testing.T) {
	r := startRig(t, 250*time.Millisecond)

	var p pageJSON
	getJSON(t, r.base+"/api/nodes?sort=id", &p)
	if want := []string{"eu-1@eu", "eu-2@eu", "eu-3@eu", "us-1@us", "us-2@us"}; !slices.Equal(p.ids(), want) || p.Total != 5 {
		t.Fatalf("nodes by id %v of %d, want %v", p.ids(), p.Total, want)
	}
	getJSON(t, r.base+"/api/nodes?sort=id&group=us", &p)
	if want := []string{"us-1@us", "us-2@us"}; !slices.Equal(p.ids(), want) || p.Total != 2 {
		t.Fatalf("group us: %v of %d, want %v", p.ids(), p.Total, want)
	}
	getJSON(t, r.base+"/api/nodes?q=EU-2", &p)
	if want := []string{"eu-2@eu"}; !slices.Equal(p.ids(), want) || p.Total != 1 {
		t.Fatalf("filter eu-2: %v of %d", p.ids(), p.Total)
	}
	getJSON(t, r.base+"/api/nodes?sort=id&offset=3&limit=5", &p)
	if want := []string{"us-1@us", "us-2@us"}; !slices.Equal(p.ids(), want) || p.Total != 5 || p.Offset != 3 {
		t.Fatalf("page from 3: %v of %d", p.ids(), p.Total)
	}
	getJSON(t, r.base+"/api/nodes?offset=99", &p)
	if len(p.Nodes) != 0 || p.Total != 5 {
		t.Fatalf("past the end: %v of %d", p.ids(), p.Total)
	}
	for _, bad := range []string{"limit=0", "limit=100000", "offset=-1", "sort=name"} {
		var msg string
		if code := getJSON(t, r.base+"/api/nodes?"+bad, &msg); code != http.StatusBadRequest || !strings.Contains(msg, strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("%s: %d %q, want 400 naming the parameter", bad, code, msg)
		}
	}
	// The endpoints that were there before are unchanged beside the view.
	for path, want := range map[string]string{"/healthz": "ok\n", "/metrics": "happen_", "/": "<title>happen</title>"} {
		resp, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, want 200 with %q", path, resp.StatusCode, want)
		}
	}

	stream := openStream(t, r.base)
	first := stream.message()
	second := stream.message()
	if second.Tick <= first.Tick || !second.At.After(first.At) || second.Totals.Nodes != 5 || len(second.Groups) != 2 || second.Interval != 0.25 {
		t.Fatalf("two messages: tick %d then %d, at %v then %v, %d nodes in %d groups, interval %v",
			first.Tick, second.Tick, first.At, second.At, second.Totals.Nodes, len(second.Groups), second.Interval)
	}
	if second.Rules.Count != len(r.set.Rules) || len(second.Rules.List) != len(r.set.Rules) || second.Rules.LastReload != nil {
		t.Fatalf("rules %+v", second.Rules)
	}

	// The sparklines fill, one point per step (the interval here).
	testutil.Eventually(t, 10*time.Second, func() bool {
		getJSON(t, r.base+"/api/nodes?sort=id&limit=1", &p)
		return len(p.Nodes) == 1 && len(p.Nodes[0].Points) >= 4 && p.History.Step == 0.25
	}, "sparkline points")

	r.judged()
	r.workers["eu-2"].Kill()
	var sawDown bool
	testutil.CheckFor(t, 30*time.Second, func() error {
		m := stream.message()
		for _, e := range m.Events {
			if e.Type == events.TypeNodeDown && e.Node == "eu-2" && e.Pattern == "node-failure" {
				sawDown = true
			}
		}
		if !sawDown || m.IncidentCount != 1 || m.Totals.Down != 1 || m.Groups[0].Name != "eu" || m.Groups[0].Down != 1 {
			return fmt.Errorf("down %v, incidents %d, totals %+v, groups %+v", sawDown, m.IncidentCount, m.Totals, m.Groups)
		}
		if in := m.Incidents[0]; in.Pattern != "node-failure" || !slices.Equal(in.Nodes, []string{"eu-2"}) || in.Level != "critical" {
			return fmt.Errorf("incident %+v", in)
		}
		return nil
	})
	getJSON(t, r.base+"/api/nodes", &p)
	if n := p.Nodes[0]; n.ID != "eu-2" || n.State != "down" || n.Pattern != "node-failure" || p.Sort != "trouble" {
		t.Fatalf("trouble first: %+v", p.Nodes[0])
	}

	// A refused ruleset change, then an applied one: the last result shows.
	r.eng.Reject(rules.Errors{{Pos: rules.Position{File: "rules/x.yaml", Line: 3, Col: 5}, Msg: `unknown field "whn"`}})
	testutil.CheckFor(t, 10*time.Second, func() error {
		m := stream.message()
		lr := m.Rules.LastReload
		if lr == nil || lr.Result != "rejected" || !slices.Equal(lr.Errors, []string{`rules/x.yaml:3:5: unknown field "whn"`}) {
			return fmt.Errorf("last reload %+v", lr)
		}
		return nil
	})
	r.eng.Reload(r.set)
	testutil.CheckFor(t, 10*time.Second, func() error {
		m := stream.message()
		lr := m.Rules.LastReload
		if lr == nil || lr.Result != "applied" || lr.Rules != len(r.set.Rules) || !slices.Equal(lr.Files, r.set.Files) {
			return fmt.Errorf("last reload %+v", lr)
		}
		return nil
	})
	var st engine.Status
	getJSON(t, r.base+"/api/status", &st)
	if lr := st.Rules.LastReload; lr == nil || lr.Result != "applied" || len(st.Rules.List) != len(r.set.Rules) {
		t.Fatalf("/api/status rules %+v", st.Rules)
	}
}

// When the engine goes blind the stream goes on, one message per tick
// (each a sample that timed out), saying so.
func TestWebViewStreamWhileBlind(t *testing.T) {
	r := startRig(t, 250*time.Millisecond)
	stream := openStream(t, r.base)
	if m := stream.message(); !m.Healthy || m.Blind {
		t.Fatalf("healthy %v blind %v before the outage", m.Healthy, m.Blind)
	}
	r.srv.Shutdown()
	testutil.CheckFor(t, 15*time.Second, func() error {
		m := stream.message()
		if m.Healthy || !m.Blind || m.Reason == "" {
			return fmt.Errorf("healthy %v, blind %v, reason %q", m.Healthy, m.Blind, m.Reason)
		}
		return nil
	})
	// Still ticking: another message comes while blind.
	if m := stream.message(); !m.Blind {
		t.Fatalf("blind %v on the next tick", m.Blind)
	}
}

type streamMessage struct {
	Tick     uint64
	At       time.Time
	Interval float64
	Healthy  bool
	Blind    bool
	Reason   string
	Totals   struct{ Nodes, Down, Stalled int }
	Groups   []struct {
		Name        string
		Nodes, Down int
	}
	Incidents []struct {
		Pattern, Level string
		Nodes          []string
	}
	IncidentCount int
	Rules         engine.RulesStatus
	Events        []struct{ Type, Node, Pattern string }
	EventsReset   bool
}

type sse struct {
	t *testing.T
	r *bufio.Reader
}

// openStream reads /api/stream until the test ends.
func openStream(t *testing.T, base string) sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream content type %q", ct)
	}
	return sse{t, bufio.NewReader(resp.Body)}
}

// message reads the next message, failing the test if none comes within
// 5s: a tick is 250ms here.
func (s sse) message() streamMessage {
	s.t.Helper()
	type result struct {
		data string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		var data string
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				got <- result{err: err}
				return
			}
			line = strings.TrimRight(line, "\n")
			if line == "" && data != "" {
				got <- result{data: data}
				return
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				data += d
			}
		}
	}()
	select {
	case res := <-got:
		if res.err != nil {
			s.t.Fatalf("read stream: %v", res.err)
		}
		var m streamMessage
		if err := json.Unmarshal([]byte(res.data), &m); err != nil {
			s.t.Fatalf("stream message %s: %v", res.data, err)
		}
		return m
	case <-time.After(5 * time.Second):
		s.t.Fatal("no stream message within 5s")
	}
	return streamMessage{}
}
