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

	keys []flow.NodeKey
}

// RulesStatus names the rules in force.
type RulesStatus struct {
	Files []string `json:"files"`
	Count int      `json:"count"`
}

// view is what a tick leaves for Status: the flow state (never changed
// after the tick) and a copy of the open incidents. Status builds its node
// list from it only when asked, keeping that work off the tick.
type view struct {
	st        *flow.State
	incidents []IncidentState
	rules     RulesStatus
	blind     bool
	reason    string
}

// Status returns the state as of the last tick. Healthy is computed now:
// false once no sample has succeeded for two intervals.
func (e *Engine) Status() *Status {
	v := e.view.Load()
	s := &Status{
		Healthy:    true,
		Blind:      v.blind,
		Reason:     v.reason,
		Nodes:      []NodeStatus{},
		Unobserved: []string{},
		Groups:     []flow.Group{},
		Incidents:  v.incidents,
		Rules:      v.rules,
	}
	if s.Incidents == nil {
		s.Incidents = []IncidentState{}
	}
	if ok, why := e.Health(); !ok {
		s.Healthy, s.Reason = false, why
	}
	if v.st == nil {
		return s
	}
	st := v.st
	s.At, s.System = st.At, st.System
	if st.Groups != nil {
		s.Groups = st.Groups
	}
	s.Nodes = make([]NodeStatus, len(st.Nodes))
	byKey := make(map[flow.NodeKey]*NodeStatus, len(st.Nodes))
	for i := range st.Nodes {
		s.Nodes[i] = NodeStatus{Node: st.Nodes[i], State: "ok"}
		byKey[st.Nodes[i].Key] = &s.Nodes[i]
	}
	for _, k := range st.Unobserved {
		s.Unobserved = append(s.Unobserved, k.String())
	}
	for _, inc := range v.incidents {
		if inc.Emit == "system.down" {
			continue
		}
		for _, k := range inc.keys {
			if n := byKey[k]; n != nil {
				n.State, n.Pattern, n.Incident = "down", inc.Pattern, inc.ID
			}
		}
	}
	return s
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

// newView copies what Status needs from this tick: the open incidents are
// the evaluator's and change on the next tick.
func (e *Engine) newView(st *flow.State) *view {
	set := e.eval.Set()
	v := &view{st: st, rules: RulesStatus{Files: set.Files, Count: len(set.Rules)}}
	var ids map[flow.NodeKey]string
	for _, inc := range e.eval.Active() {
		if ids == nil {
			ids = make(map[flow.NodeKey]string, len(st.Nodes))
			for i := range st.Nodes {
				ids[st.Nodes[i].Key] = st.Nodes[i].ID
			}
		}
		is := IncidentState{
			ID: inc.ID, Rule: inc.Rule.Name, Pattern: inc.Rule.Pattern, Level: inc.Rule.Level,
			Emit: inc.Rule.Emit, Subject: inc.Subject, Since: inc.Since,
			Nodes: make([]string, 0, len(inc.Nodes)), keys: append([]flow.NodeKey(nil), inc.Nodes...),
		}
		for _, k := range inc.Nodes {
			id := ids[k]
			if id == "" {
				id = k.Consumer
			}
			is.Nodes = append(is.Nodes, id)
		}
		v.incidents = append(v.incidents, is)
	}
	sort.Slice(v.incidents, func(i, j int) bool { return v.incidents[i].Since.Before(v.incidents[j].Since) })
	return v
}
