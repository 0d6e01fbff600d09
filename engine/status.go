package engine

import (
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/rules"
)

// Status is what /api/status serves: the engine's health and every node,
// group and open incident as of the last tick.
type Status struct {
	At       time.Time `json:"at"`
	Healthy  bool      `json:"healthy"`
	Blind    bool      `json:"blind"`
	Isolated bool      `json:"isolated,omitempty"` // the engine's own server is cut from its cluster
	// Role is "leader", or "standby" while another engine holds the lease
	// (ha.go), "member" when the engines share the streams (share.go). Leader names the engine leading, and LeaseAgeSeconds is the
	// time since it last renewed its lease; both only with a lease.
	Role            string  `json:"role"`
	Leader          string  `json:"leader,omitempty"`
	LeaseAgeSeconds float64 `json:"leaseAgeSeconds,omitempty"`
	// Members are the engines sharing the streams, and OwnedStreams how
	// many of them this one sampled at the last tick; only when shared
	// (share.go), when Role is "leader" or "member".
	Members      []string        `json:"members,omitempty"`
	OwnedStreams int             `json:"ownedStreams,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Nodes        []NodeStatus    `json:"nodes"`
	Total        int             `json:"total"`            // nodes matched; Nodes may be one page of them
	Offset       int             `json:"offset,omitempty"` // where that page starts (api.go)
	Unobserved   []string        `json:"unobserved"`
	Groups       []flow.Group    `json:"groups"`
	System       flow.System     `json:"system"`
	Incidents    []IncidentState `json:"incidents"`
	Rules        RulesStatus     `json:"rules"`
}

// NodeStatus is one node and its state: "ok", or "down" with the pattern
// of the incident holding it.
type NodeStatus struct {
	flow.Node
	State    string `json:"state"`
	Pattern  string `json:"pattern,omitempty"`
	Incident string `json:"incident,omitempty"`
	Level    string `json:"level,omitempty"` // the incident's level
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
	Files []string   `json:"files"`
	Count int        `json:"count"`
	List  []RuleInfo `json:"list"`
	// LastReload is the outcome of the last ruleset change since the engine
	// started; nil while the rules are those it started with.
	LastReload *ReloadResult `json:"lastReload,omitempty"`
}

// RuleInfo is one rule in force.
type RuleInfo struct {
	Name    string `json:"name"`
	Scope   string `json:"scope"`
	Emit    string `json:"emit"`
	Pattern string `json:"pattern"`
	Level   string `json:"level"`
	At      string `json:"at"` // file:line of the rule
}

// ReloadResult is the outcome of one ruleset change: "applied", with the
// files and rule count now in force, or "rejected", with every fault as
// file:line:col: message (the previous rules stay in force).
type ReloadResult struct {
	At     time.Time `json:"at"`
	Result string    `json:"result"`
	Files  []string  `json:"files,omitempty"`
	Rules  int       `json:"rules,omitempty"`
	Errors []string  `json:"errors,omitempty"`
}

// rejected is the ReloadResult of a change refused with err.
func rejected(err error) *ReloadResult {
	r := &ReloadResult{At: time.Now(), Result: "rejected"}
	var diags rules.Errors
	if errors.As(err, &diags) {
		for _, d := range diags {
			r.Errors = append(r.Errors, d.Error())
		}
	} else {
		r.Errors = []string{err.Error()}
	}
	return r
}

// ruleList describes every rule of set, in its order.
func ruleList(set *rules.Set) []RuleInfo {
	out := make([]RuleInfo, len(set.Rules))
	for i, r := range set.Rules {
		at := r.Pos.File
		if r.Pos.Line > 0 {
			at += ":" + strconv.Itoa(r.Pos.Line)
		}
		out[i] = RuleInfo{Name: r.Name, Scope: string(r.Scope), Emit: r.Emit, Pattern: r.Pattern, Level: r.Level, At: at}
	}
	return out
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
	s.Rules.LastReload = e.lastReload.Load()
	if s.Incidents == nil {
		s.Incidents = []IncidentState{}
	}
	if ok, why := e.Health(); !ok {
		s.Healthy, s.Reason = false, why
	}
	s.Isolated = e.iso.current() != nil
	r := e.Role()
	s.Role, s.Leader, s.LeaseAgeSeconds, s.Members, s.OwnedStreams = r.Role, r.Leader, r.LeaseAgeSeconds, r.Members, r.OwnedStreams
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
	s.Total = len(s.Nodes)
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
				n.Level = inc.Level
			}
		}
	}
	return s
}

// Health reports whether the engine is connected and sampling, and not
// cut off from its cluster (isolation.go).
func (e *Engine) Health() (bool, string) {
	if !e.nc.IsConnected() {
		return false, "not connected to NATS"
	}
	if iso := e.iso.current(); iso != nil {
		return false, iso.Reason
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
	v := &view{st: st, rules: RulesStatus{Files: set.Files, Count: len(set.Rules), List: ruleList(set)}}
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

// TroubleRank orders nodes by how much they need a look, lowest first: in
// an incident (critical, then warning, then any other level), stalled,
// falling behind or lagging, then the rest.
func (n *NodeStatus) TroubleRank() int {
	switch {
	case n.State == "down" && n.Level == "critical":
		return 0
	case n.State == "down" && n.Level == "warning":
		return 1
	case n.State == "down":
		return 2
	case n.Stalled:
		return 3
	case n.FallingBehind || n.Lagging:
		return 4
	}
	return 5
}

// Troubled reports whether n is anything but ok: in an incident, stalled,
// falling behind or lagging.
func (n *NodeStatus) Troubled() bool { return n.TroubleRank() < 5 }

// SortTrouble sorts nodes trouble first (TroubleRank), then by messages
// waiting, most first, then by id and key so the order is stable.
func SortTrouble(nodes []NodeStatus) {
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := &nodes[i], &nodes[j]
		if ra, rb := a.TroubleRank(), b.TroubleRank(); ra != rb {
			return ra < rb
		}
		if a.MessagesWaiting != b.MessagesWaiting {
			return a.MessagesWaiting > b.MessagesWaiting
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Key.String() < b.Key.String()
	})
}

// RoleStatus is this engine's part among several: cheap to read, for
// /healthz as well as the status.
type RoleStatus struct {
	Role            string   // leader, standby or member
	Leader          string   // the engine leading, when known (only with a lease)
	LeaseAgeSeconds float64  // since the leader last renewed its lease; 0 when unknown
	Members         []string // the engines sharing the streams, when shared
	OwnedStreams    int      // streams this engine sampled at its last tick, when shared
}

// Role reports this engine's role: always leader without a lease.
func (e *Engine) Role() RoleStatus {
	r := RoleStatus{Role: RoleLeader}
	if e.cfg.Lease != nil {
		ls := e.cfg.Lease.Status()
		r.Role, r.Leader = string(ls.Role), ls.Holder
		if !ls.Renewed.IsZero() {
			r.LeaseAgeSeconds = max(0, time.Since(ls.Renewed).Seconds())
		}
	}
	if e.cfg.Members != nil {
		if r.Role != RoleLeader {
			r.Role = RoleMember
		}
		r.Members = e.cfg.Members.Live()
		r.OwnedStreams = int(e.owned.Load())
	}
	return r
}
