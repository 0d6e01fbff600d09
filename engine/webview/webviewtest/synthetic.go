// Package webviewtest provides a synthetic webview.Source: any number of
// nodes in any number of groups, a few of them down, changing on every
// tick. It exists to test the web view's rendering at sizes no test
// server can run (10,000 nodes); the engine's own behaviour is tested
// against real servers elsewhere.
package webviewtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/sdk/events"
)

// Synthetic is a made-up engine: Nodes nodes named node-00000... spread
// round-robin over groups zone-00..., with every 1000th node down
// (node-failure) and every 250th stalled.
type Synthetic struct {
	nodes, groups int
	interval      time.Duration

	mu     sync.Mutex
	tick   uint64
	bell   chan struct{}
	status *engine.Status
	events []events.Envelope
}

// New returns a synthetic source of n nodes in g groups at tick 1.
func New(n, g int, interval time.Duration) *Synthetic {
	s := &Synthetic{nodes: n, groups: g, interval: interval, bell: make(chan struct{})}
	s.status = s.build(1, time.Now())
	s.tick = 1
	at := time.Now().Add(-time.Minute)
	for i := 0; i < n; i += 1000 {
		s.events = append(s.events, envelope(events.TypeNodeDown, at.Add(time.Duration(i)*time.Millisecond), events.NodeDown{
			NodeID: NodeID(i), Pattern: "node-failure", Rule: "node-failure", Level: events.LevelCritical,
			Stream: "ORDERS", Consumer: NodeID(i), Group: GroupName(i % g), AffectedNodes: []string{NodeID(i)},
		}))
	}
	return s
}

// NodeID is the id of node i.
func NodeID(i int) string { return fmt.Sprintf("node-%05d", i) }

// GroupName is the name of group j.
func GroupName(j int) string { return fmt.Sprintf("zone-%02d", j) }

func envelope(typ string, at time.Time, p any) events.Envelope {
	raw, _ := json.Marshal(p)
	return events.Envelope{Type: typ, Payload: raw, Context: events.Context{
		ID: fmt.Sprintf("%s-%d", typ, at.UnixNano()), Timestamp: at.UnixMilli(), Sender: "happen-engine/synthetic"}}
}

// lag is node i's messagesWaiting at tick t: a slow wave per node, and a
// steady climb for the nodes down.
func lag(i int, t uint64) int {
	if i%1000 == 0 {
		return 500 + i/100 + int(t)*7
	}
	return int(40 + 35*math.Sin(float64(i)+float64(t)/4))
}

func (s *Synthetic) build(t uint64, at time.Time) *engine.Status {
	st := &engine.Status{At: at, Healthy: true, Nodes: make([]engine.NodeStatus, s.nodes), Unobserved: []string{},
		Rules: engine.RulesStatus{Files: []string{"synthetic.yaml"}, Count: 1, List: []engine.RuleInfo{
			{Name: "node-failure", Scope: "node", Emit: events.TypeNodeDown, Pattern: "node-failure", Level: events.LevelCritical, At: "synthetic.yaml:3"},
		}}}
	groups := make([]flow.Group, s.groups)
	for j := range groups {
		groups[j].Name = GroupName(j)
	}
	for i := range st.Nodes {
		id := NodeID(i)
		n := &st.Nodes[i]
		n.Key = flow.NodeKey{Stream: "ORDERS", Consumer: id}
		n.ID, n.Stream, n.Consumer, n.Group = id, "ORDERS", id, GroupName(i%s.groups)
		n.MessagesWaiting = lag(i, t)
		n.NumPending = n.MessagesWaiting
		n.DeliveryRate, n.AckRate = 20, 20
		n.AckCadence, n.CadenceLearned, n.StallThreshold = 0.1, true, 2
		n.State = "ok"
		g := &groups[i%s.groups]
		g.Size++
		g.MessagesWaiting += n.MessagesWaiting
		switch {
		case i%1000 == 0:
			n.State, n.Pattern, n.Level, n.Incident = "down", "node-failure", events.LevelCritical, "inc-"+id
			n.Stalled, n.AckRate, n.DeliveryRate = true, 0, 0
			g.Stalled++
			st.Incidents = append(st.Incidents, engine.IncidentState{ID: n.Incident, Rule: "node-failure", Pattern: "node-failure",
				Level: events.LevelCritical, Emit: events.TypeNodeDown, Since: at.Add(-time.Minute), Nodes: []string{id}})
		case i%250 == 0:
			n.Stalled, n.AckRate = true, 0
			g.Stalled++
		}
	}
	st.Groups = groups
	st.Total = len(st.Nodes)
	st.System = flow.System{Nodes: s.nodes, Groups: s.groups, Streams: 1, PublishRate: float64(s.nodes) * 20}
	return st
}

// Step advances one tick: every lag moves, and whoever waits for a tick
// wakes.
func (s *Synthetic) Step() {
	s.mu.Lock()
	t := s.tick + 1
	s.mu.Unlock()
	st := s.build(t, time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick, s.status = t, st
	close(s.bell)
	s.bell = make(chan struct{})
}

// Run steps every interval until ctx ends.
func (s *Synthetic) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Step()
		}
	}
}

// Health is always good.
func (s *Synthetic) Health() (bool, string) { return true, "" }

// Status is the last tick's status; callers must not change it.
func (s *Synthetic) Status() *engine.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Ticks is the tick count and a channel closed at the next.
func (s *Synthetic) Ticks() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tick, s.bell
}

// Interval is the step interval given to New.
func (s *Synthetic) Interval() time.Duration { return s.interval }

// LagHistory is each node's lag over the last engine.HistoryPoints ticks.
func (s *Synthetic) LagHistory(keys []flow.NodeKey) engine.LagHistory {
	s.mu.Lock()
	t := s.tick
	s.mu.Unlock()
	n := min(int(t), engine.HistoryPoints)
	out := engine.LagHistory{Step: s.interval, At: time.Now(), Series: make([][]float32, len(keys))}
	for k, key := range keys {
		var i int
		if _, err := fmt.Sscanf(key.Consumer, "node-%05d", &i); err != nil {
			out.Series[k] = make([]float32, n)
			for j := range out.Series[k] {
				out.Series[k][j] = float32(math.NaN())
			}
			continue
		}
		pts := make([]float32, n)
		for j := range pts {
			pts[j] = float32(lag(i, t-uint64(n-1-j)))
		}
		out.Series[k] = pts
	}
	return out
}

// RecentEvents returns the synthetic events f selects, oldest first.
func (s *Synthetic) RecentEvents(f engine.EventFilter) []events.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []events.Envelope
	for _, e := range s.events {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

// Publish adds an event, as the engine publishing one.
func (s *Synthetic) Publish(typ string, payload any) events.Envelope {
	env := envelope(typ, time.Now(), payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, env)
	return env
}
