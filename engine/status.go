package engine

import (
	"sort"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// Status is what /api/status serves: the engine's health and every node,
// group and open incident as of the last tick.
type Status struct {
	At         time.Time       `json:"at"`
	Healthy    bool            `json:"healthy"`
	Blind      bool            `json:"blind"`
	Reason     string          `json:"reason,omitempty"`
	Nodes      []NodeStatus    `json:"nodes"`
	Unobserved []string        `json:"unobserved"`
	Groups     []flow.Group    `json:"groups"`
	System     flow.System     `json:"system"`
	Incidents  []IncidentState `json:"incidents"`
	Rules      RulesStatus     `json:"rules"`
}

// NodeStatus is one node and its state: "ok", or "down" with the pattern
// of the incident holding it.
type NodeStatus struct {
	flow.Node
	State    string `json:"state"`
	Pattern  string `json:"pattern,omitempty"`
	Incident string `json:"incident,omitempty"`
}

// IncidentState is one open incident.
type IncidentState struct {
	ID      string    `json:"id"`
	Rule    string    `json:"rule"`
	Pattern string    `json:"pattern"`
	Level   string    `json:"level"`
	Emit    string    `json:"emit"`
	Subject string    `json:"subject,omitempty"`
	Since   time.Time `json:"since"`
	Nodes   []string  `json:"nodes"`
}

// RulesStatus names the rules in force.
type RulesStatus struct {
	Files []string `json:"files"`
	Count int      `json:"count"`
}

// Status returns the state as of the last tick. Healthy is computed now:
// false once no sample has succeeded for two intervals.
func (e *Engine) Status() *Status {
	s := *e.status.Load()
	if ok, why := e.Health(); !ok {
		s.Healthy, s.Reason = false, why
	}
	return &s
}

// Health reports whether the engine is connected and sampling.
func (e *Engine) Health() (bool, string) {
	if !e.nc.IsConnected() {
		return false, "not connected to NATS"
	}
	last := e.lastOK.Load()
	if last == 0 {
		return false, "no successful sample yet"
	}
	if age := time.Since(time.Unix(0, last)); age > 2*e.cfg.Interval {
		return false, "no successful sample for " + age.Round(time.Millisecond).String()
	}
	return true, ""
}

func (e *Engine) buildStatus(st *flow.State, snap flow.Snapshot) *Status {
	set := e.eval.Set()
	s := &Status{
		At:         snap.At,
		Healthy:    true,
		Groups:     st.Groups,
		System:     st.System,
		Nodes:      make([]NodeStatus, len(st.Nodes)),
		Unobserved: make([]string, 0, len(st.Unobserved)),
		Incidents:  []IncidentState{},
		Rules:      RulesStatus{Files: set.Files, Count: len(set.Rules)},
	}
	byKey := make(map[flow.NodeKey]*NodeStatus, len(st.Nodes))
	for i := range st.Nodes {
		s.Nodes[i] = NodeStatus{Node: st.Nodes[i], State: "ok"}
		byKey[st.Nodes[i].Key] = &s.Nodes[i]
	}
	for _, k := range st.Unobserved {
		s.Unobserved = append(s.Unobserved, k.String())
	}
	for _, inc := range e.eval.Active() {
		is := IncidentState{
			ID: inc.ID, Rule: inc.Rule.Name, Pattern: inc.Rule.Pattern, Level: inc.Rule.Level,
			Emit: inc.Rule.Emit, Subject: inc.Subject, Since: inc.Since, Nodes: []string{},
		}
		for _, k := range inc.Nodes {
			n := byKey[k]
			is.Nodes = append(is.Nodes, nodeID(nodeOf(n), k))
			if n != nil && inc.Rule.Emit != "system.down" {
				n.State, n.Pattern, n.Incident = "down", inc.Rule.Pattern, inc.ID
			}
		}
		s.Incidents = append(s.Incidents, is)
	}
	sort.Slice(s.Incidents, func(i, j int) bool { return s.Incidents[i].Since.Before(s.Incidents[j].Since) })
	return s
}

func nodeOf(n *NodeStatus) *flow.Node {
	if n == nil {
		return nil
	}
	return &n.Node
}
