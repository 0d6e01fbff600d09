package webview

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
)

// Node states as the view shows them, most troubled first. "down" is a
// node held by an open incident; the others come from its flow.
const (
	StateDown    = "down"
	StateStalled = "stalled"
	StateBehind  = "behind" // falling behind or lagging, still acking
	StateWarming = "warming"
	StateIdle    = "idle"
	StateOK      = "ok"
)

// nodeState is the state the view shows for n.
func nodeState(n *engine.NodeStatus) string {
	switch {
	case n.State == "down":
		return StateDown
	case n.Stalled:
		return StateStalled
	case n.FallingBehind || n.Lagging:
		return StateBehind
	case n.Warming:
		return StateWarming
	case n.Idle:
		return StateIdle
	}
	return StateOK
}

// Sort orders of the node list.
const (
	SortTrouble = "trouble" // down, stalled, behind, then the most waiting first
	SortID      = "id"
	SortLag     = "lag" // the most waiting first
)

var sorts = []string{SortTrouble, SortID, SortLag}

// row is one node of a snapshot with what filtering and sorting read.
type row struct {
	n      *engine.NodeStatus
	state  string
	rank   int    // engine.NodeStatus.TroubleRank
	search string // lower-case id, then stream/consumer, for the filter box
}

// snapshot is one tick as the view serves it. Sort orders are made on the
// first request that needs them and shared by every later one.
type snapshot struct {
	tick     uint64
	status   *engine.Status
	interval time.Duration
	rows     []row

	mu     sync.Mutex
	orders map[string][]int32

	sumOnce sync.Once
	sum     summary
}

// snapCache holds the last tick's snapshot.
type snapCache struct {
	mu   sync.Mutex
	snap *snapshot
}

// current returns the snapshot of the last tick, building it if the engine
// has ticked since.
func (v *view) current() *snapshot {
	n, _ := v.src.Ticks()
	v.cache.mu.Lock()
	defer v.cache.mu.Unlock()
	if s := v.cache.snap; s != nil && s.tick == n {
		return s
	}
	s := newSnapshot(n, v.src.Status(), v.src.Interval())
	v.cache.snap = s
	return s
}

func newSnapshot(tick uint64, st *engine.Status, interval time.Duration) *snapshot {
	s := &snapshot{tick: tick, status: st, interval: interval, rows: make([]row, len(st.Nodes)), orders: map[string][]int32{}}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		s.rows[i] = row{n: n, state: nodeState(n), rank: n.TroubleRank(),
			search: strings.ToLower(n.ID) + "\x00" + strings.ToLower(n.Stream+"/"+n.Consumer)}
	}
	return s
}

// order returns the row indexes in the given sort order.
func (s *snapshot) order(by string) []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orders[by]; ok {
		return o
	}
	o := make([]int32, len(s.rows))
	for i := range o {
		o[i] = int32(i)
	}
	rows := s.rows
	byID := func(a, b *row) int {
		if c := cmp.Compare(a.n.ID, b.n.ID); c != 0 {
			return c
		}
		if c := cmp.Compare(a.n.Stream, b.n.Stream); c != 0 {
			return c
		}
		return cmp.Compare(a.n.Consumer, b.n.Consumer)
	}
	byLag := func(a, b *row) int {
		if c := cmp.Compare(b.n.MessagesWaiting, a.n.MessagesWaiting); c != 0 {
			return c
		}
		return byID(a, b)
	}
	var f func(a, b *row) int
	switch by {
	case SortID:
		f = byID
	case SortLag:
		f = byLag
	default:
		f = func(a, b *row) int {
			if c := cmp.Compare(a.rank, b.rank); c != 0 {
				return c
			}
			return byLag(a, b)
		}
	}
	slices.SortFunc(o, func(a, b int32) int { return f(&rows[a], &rows[b]) })
	s.orders[by] = o
	return o
}

// query selects and orders nodes for one page.
type query struct {
	offset, limit int
	sort          string
	group         string
	byGroup       bool   // group was given: only nodes of that group ("" is the ungrouped)
	q             string // lower-case substring of id or stream/consumer
}

// page returns the rows of q's page and how many rows match in all.
func (s *snapshot) page(q query) ([]*row, int) {
	out := make([]*row, 0, min(q.limit, len(s.rows)))
	total := 0
	for _, i := range s.order(q.sort) {
		r := &s.rows[i]
		if q.byGroup && r.n.Group != q.group {
			continue
		}
		if q.q != "" && !strings.Contains(r.search, q.q) {
			continue
		}
		if total >= q.offset && len(out) < q.limit {
			out = append(out, r)
		}
		total++
	}
	return out, total
}

// counts is how many nodes are in each state, with their flow summed.
type counts struct {
	Nodes           int     `json:"nodes"`
	Down            int     `json:"down"`
	Stalled         int     `json:"stalled"`
	Behind          int     `json:"behind"`
	Warming         int     `json:"warming"`
	Idle            int     `json:"idle"`
	OK              int     `json:"ok"`
	MessagesWaiting int     `json:"messagesWaiting"`
	DeliveryRate    float64 `json:"deliveryRate"`
	AckRate         float64 `json:"ackRate"`
}

func (c *counts) add(r *row) {
	c.Nodes++
	switch r.state {
	case StateDown:
		c.Down++
	case StateStalled:
		c.Stalled++
	case StateBehind:
		c.Behind++
	case StateWarming:
		c.Warming++
	case StateIdle:
		c.Idle++
	default:
		c.OK++
	}
	c.MessagesWaiting += r.n.MessagesWaiting
	c.DeliveryRate += r.n.DeliveryRate
	c.AckRate += r.n.AckRate
}

func (c *counts) trouble() int { return c.Down + c.Stalled + c.Behind }

// groupSummary is one group: its nodes by state and the engine's
// aggregates of its flow.
type groupSummary struct {
	Name string `json:"name"`
	counts
	ArrivalRate float64 `json:"arrivalRate"`
}

// maxIncidentNodes bounds the node ids an incident carries in a summary: a
// partition of a large group or an overload names thousands; the view
// shows the first few and the count.
const maxIncidentNodes = 20

// maxIncidents bounds the incidents a summary lists, most recent first;
// the count says how many are open in all.
const maxIncidents = 100

// incident is one open incident as the summary carries it.
type incident struct {
	ID        string    `json:"id"`
	Rule      string    `json:"rule"`
	Pattern   string    `json:"pattern"`
	Level     string    `json:"level"`
	Emit      string    `json:"emit"`
	Since     time.Time `json:"since"`
	Nodes     []string  `json:"nodes"`
	NodeCount int       `json:"nodeCount"`
}

// summary is what every stream message carries besides new events: small
// whatever the node count.
type summary struct {
	Tick          uint64             `json:"tick"`
	At            time.Time          `json:"at"`
	Interval      float64            `json:"interval"` // seconds
	Healthy       bool               `json:"healthy"`
	Blind         bool               `json:"blind"`
	Reason        string             `json:"reason,omitempty"`
	Role          string             `json:"role,omitempty"`    // with several engines: leader, standby or member
	Leader        string             `json:"leader,omitempty"`  // the engine leading
	Members       int                `json:"members,omitempty"` // engines sharing the streams
	Totals        counts             `json:"totals"`
	Unobserved    int                `json:"unobserved"`
	PublishRate   float64            `json:"publishRate"`
	ArrivalRate   float64            `json:"arrivalRate"`
	Streams       int                `json:"streams"`
	Groups        []groupSummary     `json:"groups"`
	Incidents     []incident         `json:"incidents"`
	IncidentCount int                `json:"incidentCount"`
	Rules         engine.RulesStatus `json:"rules"`
}

// summary returns the snapshot's summary, made on first use.
func (s *snapshot) summary() *summary {
	s.sumOnce.Do(func() { s.sum = s.makeSummary() })
	return &s.sum
}

func (s *snapshot) makeSummary() summary {
	st := s.status
	sum := summary{
		Tick: s.tick, At: st.At, Interval: s.interval.Seconds(),
		Healthy: st.Healthy, Blind: st.Blind, Reason: st.Reason, Role: st.Role, Leader: st.Leader, Members: len(st.Members),
		Unobserved: len(st.Unobserved), PublishRate: st.System.PublishRate, ArrivalRate: st.System.ArrivalRate,
		Streams: st.System.Streams, Rules: st.Rules, IncidentCount: len(st.Incidents),
		Groups: []groupSummary{}, Incidents: []incident{},
	}
	byName := map[string]*groupSummary{}
	var names []string
	for i := range st.Groups {
		g := &st.Groups[i]
		byName[g.Name] = &groupSummary{Name: g.Name, ArrivalRate: g.ArrivalRate}
		names = append(names, g.Name)
	}
	for i := range s.rows {
		r := &s.rows[i]
		sum.Totals.add(r)
		g := byName[r.n.Group]
		if g == nil { // ungrouped nodes, or a group the engine does not list
			g = &groupSummary{Name: r.n.Group}
			byName[r.n.Group] = g
			names = append(names, r.n.Group)
		}
		g.add(r)
	}
	for _, name := range names {
		if g := byName[name]; g.Nodes > 0 {
			sum.Groups = append(sum.Groups, *g)
		}
	}
	// Groups in trouble first, so the one to look at is on top even among
	// hundreds; the rest by name, so the list does not move while calm.
	slices.SortStableFunc(sum.Groups, func(a, b groupSummary) int {
		if c := cmp.Compare(b.Down, a.Down); c != 0 {
			return c
		}
		if c := cmp.Compare(b.trouble(), a.trouble()); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	incs := st.Incidents
	if len(incs) > maxIncidents {
		incs = incs[len(incs)-maxIncidents:] // sorted by Since: keep the newest
	}
	for i := len(incs) - 1; i >= 0; i-- {
		in := incs[i]
		nodes := in.Nodes
		if len(nodes) > maxIncidentNodes {
			nodes = nodes[:maxIncidentNodes]
		}
		sum.Incidents = append(sum.Incidents, incident{ID: in.ID, Rule: in.Rule, Pattern: in.Pattern, Level: in.Level,
			Emit: in.Emit, Since: in.Since, Nodes: nodes, NodeCount: len(in.Nodes)})
	}
	if sum.Rules.List == nil {
		sum.Rules.List = []engine.RuleInfo{}
	}
	if sum.Rules.Files == nil {
		sum.Rules.Files = []string{}
	}
	return sum
}

// nodeRow is one node of a /api/nodes page.
type nodeRow struct {
	ID                  string  `json:"id"`
	Stream              string  `json:"stream"`
	Consumer            string  `json:"consumer"`
	Group               string  `json:"group"`
	State               string  `json:"state"`
	Pattern             string  `json:"pattern,omitempty"`
	Level               string  `json:"level,omitempty"`
	Incident            string  `json:"incident,omitempty"`
	MessagesWaiting     int     `json:"messagesWaiting"`
	NumPending          int     `json:"numPending"`
	AckPending          int     `json:"ackPending"`
	DeliveryRate        float64 `json:"deliveryRate"`
	AckRate             float64 `json:"ackRate"`
	LagGrowthRate       float64 `json:"lagGrowthRate"`
	SecondsSinceLastAck float64 `json:"secondsSinceLastAck"`
	AckCadence          float64 `json:"ackCadence"`
	StallThreshold      float64 `json:"stallThreshold"`
	CadenceLearned      bool    `json:"cadenceLearned"`
	TimeLagSeconds      float64 `json:"timeLagSeconds"`
	TimeLagEstimated    bool    `json:"timeLagEstimated,omitempty"`
	SecondsToDrain      float64 `json:"secondsToDrain"` // -1: not draining
	MessagesLost        int     `json:"messagesLost,omitempty"`
	SecondsToLoss       float64 `json:"secondsToLoss"` // -1: no loss in sight
	Points              points  `json:"points"`
}

func newNodeRow(r *row, pts []float32) nodeRow {
	n := r.n
	return nodeRow{
		ID: n.ID, Stream: n.Stream, Consumer: n.Consumer, Group: n.Group,
		State: r.state, Pattern: n.Pattern, Level: n.Level, Incident: n.Incident,
		MessagesWaiting: n.MessagesWaiting, NumPending: n.NumPending, AckPending: n.AckPending,
		DeliveryRate: n.DeliveryRate, AckRate: n.AckRate, LagGrowthRate: n.LagGrowthRate,
		SecondsSinceLastAck: n.SecondsSinceLastAck,
		AckCadence:          n.AckCadence, StallThreshold: n.StallThreshold, CadenceLearned: n.CadenceLearned,
		TimeLagSeconds: n.TimeLagSeconds, TimeLagEstimated: n.TimeLagEstimated, SecondsToDrain: n.SecondsToDrain,
		MessagesLost: n.MessagesLost, SecondsToLoss: n.SecondsToLoss,
		Points: pts,
	}
}

// points is a sparkline's series: leading unknown points are dropped (the
// page right-aligns every series on the shared axis), the others unknown
// are null.
type points []float32

func (p points) MarshalJSON() ([]byte, error) {
	i := 0
	for i < len(p) && p[i] != p[i] { // NaN
		i++
	}
	b := make([]byte, 0, 2+6*(len(p)-i))
	b = append(b, '[')
	for j, v := range p[i:] {
		if j > 0 {
			b = append(b, ',')
		}
		if v != v {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
	}
	return append(b, ']'), nil
}

var _ json.Marshaler = points(nil)

// keys of rows, for LagHistory.
func keys(rows []*row) []flow.NodeKey {
	out := make([]flow.NodeKey, len(rows))
	for i, r := range rows {
		out[i] = r.n.Key
	}
	return out
}
