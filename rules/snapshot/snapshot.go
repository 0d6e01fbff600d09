// Package snapshot is the flow data that rules read: one node, one group
// and the whole system as the engine's tracker last computed them. It is a
// leaf: the engine fills it, the rules evaluate it, and neither package
// needs the other's internals.
package snapshot

import (
	"slices"
	"strings"
	"time"
)

// NodeKey identifies a consumer on the wire. Node ids come from metadata and
// may collide; the key never does.
type NodeKey struct {
	Stream   string
	Consumer string
}

func (k NodeKey) String() string { return k.Stream + "/" + k.Consumer }

// Node is the flow of one node over the recent window. Field tags are the
// names rules use: node.messagesWaiting, node.stalled, ...
type Node struct {
	Key      NodeKey `expr:"-" json:"-"`
	ID       string  `expr:"id" json:"nodeId"`
	Stream   string  `expr:"stream" json:"stream"`
	Consumer string  `expr:"consumer" json:"consumer"`
	Group    string  `expr:"group" json:"group"`

	MessagesWaiting int `expr:"messagesWaiting" json:"messagesWaiting"` // NumPending + AckPending
	NumPending      int `expr:"numPending" json:"numPending"`
	AckPending      int `expr:"ackPending" json:"ackPending"`
	Redelivered     int `expr:"redelivered" json:"redelivered"`
	WaitingPulls    int `expr:"waitingPulls" json:"waitingPulls"`

	DeliveryRate  float64 `expr:"deliveryRate" json:"deliveryRate"`   // deliveries/s over the window
	AckRate       float64 `expr:"ackRate" json:"ackRate"`             // acks/s over the window
	ArrivalRate   float64 `expr:"arrivalRate" json:"arrivalRate"`     // new work/s for this node over the window
	LagGrowthRate float64 `expr:"lagGrowthRate" json:"lagGrowthRate"` // slope of MessagesWaiting, msgs/s
	PublishRate   float64 `expr:"publishRate" json:"publishRate"`     // its stream's publish rate, msgs/s

	AckRateBaseline     float64 `expr:"ackRateBaseline" json:"ackRateBaseline"`         // slow EWMA of AckRate
	ArrivalRateBaseline float64 `expr:"arrivalRateBaseline" json:"arrivalRateBaseline"` // slow EWMA of ArrivalRate
	// ArrivalRise is ArrivalRate over ArrivalRateBaseline: above 1 while
	// its work arrives faster than usual.
	ArrivalRise float64 `expr:"arrivalRise" json:"arrivalRise"`

	NakRate           float64 `expr:"nakRate" json:"nakRate"`                     // naks/s over the window
	MaxDeliveriesRate float64 `expr:"maxDeliveriesRate" json:"maxDeliveriesRate"` // max-delivery advisories/s
	TerminatedRate    float64 `expr:"terminatedRate" json:"terminatedRate"`       // terminated messages/s

	SecondsSinceLastAck float64 `expr:"secondsSinceLastAck" json:"secondsSinceLastAck"`
	Stalled             bool    `expr:"stalled" json:"stalled"`
	StalledSeconds      float64 `expr:"stalledSeconds" json:"stalledSeconds"` // since the stall began; 0 when not stalled
	Lagging             bool    `expr:"lagging" json:"lagging"`

	// AckCadence is the node's learned normal silence in seconds: the
	// longest quiet spell (work waiting, no ack) that ended in progress
	// among its recent spells. 0 until CadenceLearned.
	AckCadence     float64 `expr:"ackCadence" json:"ackCadence"`
	CadenceLearned bool    `expr:"cadenceLearned" json:"cadenceLearned"`
	// StallThreshold is how long, in seconds, this node may be silent while
	// work waits before it counts as stalled: derived from AckCadence once
	// learned, a cautious prior before.
	StallThreshold float64 `expr:"stallThreshold" json:"stallThreshold"`
	// Idle is true when the node's state cannot be judged: no work waiting
	// and no progress within its stall threshold. An idle node is neither
	// healthy nor failed; group and system fractions leave it out.
	Idle bool `expr:"idle" json:"idle"`
	// LagFloor is the least MessagesWaiting over the node's own cadence
	// (twice its learned cadence plus an interval, within the window): what
	// stays waiting even after its acks. It rises only when the node falls
	// behind; a batch acker's sawtooth keeps it low.
	LagFloor int `expr:"lagFloor" json:"lagFloor"`
	// FallingBehind is true for a node that lags while it still acks: short
	// of capacity, not stopped.
	FallingBehind bool `expr:"fallingBehind" json:"fallingBehind"`
	// RecentStalls counts the stalls that began within the flap window
	// (the current one included); SecondsSinceStall is the time since the
	// last stall ended (0 while stalled; since watching began if never).
	RecentStalls      int     `expr:"recentStalls" json:"recentStalls"`
	SecondsSinceStall float64 `expr:"secondsSinceStall" json:"secondsSinceStall"`
	ObservedSeconds   float64 `expr:"observedSeconds" json:"observedSeconds"` // how long the engine has watched it without a gap
	// Warming is true while the node's flow cannot be judged yet: just
	// (re)observed after a gap or an engine reset, or just failed over to
	// another consumer leader. Rules neither fire nor resolve on it then.
	Warming bool `expr:"warming" json:"warming"`

	// TimeLagSeconds is the age of the oldest message the node has not
	// finished (the first past its ack floor); 0 when nothing waits. It is
	// read from the stream unless TimeLagEstimated, when it is
	// interpolated from the stream's sequence and publish times.
	TimeLagSeconds   float64 `expr:"timeLagSeconds" json:"timeLagSeconds"`
	TimeLagEstimated bool    `expr:"timeLagEstimated" json:"timeLagEstimated"`
	// SecondsToDrain is how long until what waits now is finished: 0 when
	// nothing waits, -1 while the backlog does not shrink.
	SecondsToDrain float64 `expr:"secondsToDrain" json:"secondsToDrain"`
	// MessagesLost counts the messages its stream's limits removed before
	// the node was delivered them, since the engine began watching it;
	// LossRate is their rate over the window.
	MessagesLost int     `expr:"messagesLost" json:"messagesLost"`
	LossRate     float64 `expr:"lossRate" json:"lossRate"`
	// SecondsToLoss forecasts, at the window's rates, when the stream's
	// limits will start removing messages the node has not been delivered:
	// 0 while they do, -1 when no loss is in sight (no limit, nothing
	// undelivered, or the node keeps up). RetentionLimited is true when
	// its stream has a limit that removes messages at all.
	SecondsToLoss    float64 `expr:"secondsToLoss" json:"secondsToLoss"`
	RetentionLimited bool    `expr:"retentionLimited" json:"retentionLimited"`

	Push      bool `expr:"push" json:"push"`
	PushBound bool `expr:"pushBound" json:"pushBound"`
	Paused    bool `expr:"paused" json:"paused"`

	// LeaderChangedSeconds is the time since the servers last elected a
	// leader for the node's consumer (its JetStream advisory), -1 when
	// none was elected since the engine started listening.
	LeaderChangedSeconds float64 `expr:"leaderChangedSeconds" json:"leaderChangedSeconds"`

	// StallOnset is when the current stall began (the last ack, or when
	// watching began if later); zero when not stalled.
	StallOnset time.Time `expr:"-" json:"-"`
}

// Group is the flow of every node sharing one group name. Nodes without a
// group see the zero Group: empty name, every count zero.
type Group struct {
	Name string `expr:"name" json:"name"`
	Size int    `expr:"size" json:"size"`
	// Judged counts the nodes whose state can be judged (not idle, not
	// warming); every fraction below is over Judged.
	Judged          int     `expr:"judged" json:"judged"`
	Idle            int     `expr:"idle" json:"idle"`
	Stalled         int     `expr:"stalled" json:"stalled"`
	StalledFraction float64 `expr:"stalledFraction" json:"stalledFraction"`
	Lagging         int     `expr:"lagging" json:"lagging"`
	LaggingFraction float64 `expr:"laggingFraction" json:"laggingFraction"`
	FallingBehind   int     `expr:"fallingBehind" json:"fallingBehind"`
	MessagesWaiting int     `expr:"messagesWaiting" json:"messagesWaiting"`
	AckRate         float64 `expr:"ackRate" json:"ackRate"`
	ArrivalRate     float64 `expr:"arrivalRate" json:"arrivalRate"`
	// StallSpread is the time in seconds between the first and the last
	// stall onset among its stalled nodes: small when they stopped together.
	StallSpread float64 `expr:"stallSpread" json:"stallSpread"`
	// OutsideNodes and OutsideStalledFraction describe every node not in this
	// group, so a rule can ask whether the rest still flows.
	// OutsideJudged and OutsideFlowing count the judged nodes outside it
	// and those of them not stalled: evidence that the rest still flows.
	OutsideNodes           int     `expr:"outsideNodes" json:"outsideNodes"`
	OutsideJudged          int     `expr:"outsideJudged" json:"outsideJudged"`
	OutsideFlowing         int     `expr:"outsideFlowing" json:"outsideFlowing"`
	OutsideStalledFraction float64 `expr:"outsideStalledFraction" json:"outsideStalledFraction"`

	// ServerDown is true when a server that led one of its nodes'
	// consumers went away (its consumers elected new leaders since it was
	// last heard from); ServerDownSeconds is the time since the engine
	// learned of it, -1 when none. Known only with system access.
	ServerDown        bool    `expr:"serverDown" json:"serverDown"`
	ServerDownSeconds float64 `expr:"serverDownSeconds" json:"serverDownSeconds"`
}

// System is the flow of every observed node together.
type System struct {
	Nodes int `expr:"nodes" json:"nodes"`
	// JudgedNodes are the nodes whose state can be judged (not idle, not
	// warming); every fraction below is over JudgedNodes.
	JudgedNodes        int `expr:"judgedNodes" json:"judgedNodes"`
	IdleNodes          int `expr:"idleNodes" json:"idleNodes"`
	FallingBehindNodes int `expr:"fallingBehindNodes" json:"fallingBehindNodes"`
	// FallingBehindFraction is over the judged nodes not stalled: those
	// still consuming, which alone can be short of capacity.
	FallingBehindFraction float64 `expr:"fallingBehindFraction" json:"fallingBehindFraction"`
	LaggingNodes          int     `expr:"laggingNodes" json:"laggingNodes"`
	LaggingFraction       float64 `expr:"laggingFraction" json:"laggingFraction"`
	StalledNodes          int     `expr:"stalledNodes" json:"stalledNodes"`
	StalledFraction       float64 `expr:"stalledFraction" json:"stalledFraction"`
	MessagesWaiting       int     `expr:"messagesWaiting" json:"messagesWaiting"`
	PublishRate           float64 `expr:"publishRate" json:"publishRate"`                 // all streams, msgs/s
	PublishRateBaseline   float64 `expr:"publishRateBaseline" json:"publishRateBaseline"` // slow EWMA, frozen while most nodes lag
	AckRate               float64 `expr:"ackRate" json:"ackRate"`
	ArrivalRate           float64 `expr:"arrivalRate" json:"arrivalRate"` // new work for all nodes, msgs/s
	// ArrivalRateBaseline is a slow EWMA of ArrivalRate, frozen like
	// PublishRateBaseline while most nodes lag.
	ArrivalRateBaseline float64 `expr:"arrivalRateBaseline" json:"arrivalRateBaseline"`
	// ArrivalRise is the median of the judged nodes' ArrivalRise: above 1
	// when most nodes' work arrives faster than usual, a load rise shared
	// by the system rather than one node's.
	ArrivalRise float64 `expr:"arrivalRise" json:"arrivalRise"`
	Groups      int     `expr:"groups" json:"groups"`
	Streams     int     `expr:"streams" json:"streams"`

	// What the servers say of themselves (system access; all zero without
	// it, and ServerSignals false). ServersDown counts the servers that
	// went away and have not been heard from since, ServersAnnouncedDown
	// those of them that said so first (shutdown, lame duck);
	// ServerDownSeconds is the time since the latest went, -1 when none.
	// RoutesLost counts the routes the servers still heard from had and
	// have no more: the servers' own view of a cut.
	ServerSignals        bool    `expr:"serverSignals" json:"serverSignals"`
	ServersDown          int     `expr:"serversDown" json:"serversDown"`
	ServersAnnouncedDown int     `expr:"serversAnnouncedDown" json:"serversAnnouncedDown"`
	ServerDownSeconds    float64 `expr:"serverDownSeconds" json:"serverDownSeconds"`
	RoutesLost           int     `expr:"routesLost" json:"routesLost"`
}

// State is the outcome of one Tracker update.
type State struct {
	At     time.Time
	Nodes  []Node  // observed nodes, sorted by key
	Groups []Group // named groups, sorted by name
	System System
	// Unobserved nodes are known but unread this tick: neither healthy nor down.
	Unobserved []NodeKey
	// Left lists nodes that were tracked and are gone (consumer or stream deleted).
	Left []NodeKey

	none Group // what ungrouped nodes see
}

// Node returns the observed node with key k, or nil. Nodes are sorted by
// key.
func (s *State) Node(k NodeKey) *Node {
	i, ok := slices.BinarySearchFunc(s.Nodes, k, func(n Node, k NodeKey) int {
		if c := strings.Compare(n.Key.Stream, k.Stream); c != 0 {
			return c
		}
		return strings.Compare(n.Key.Consumer, k.Consumer)
	})
	if !ok {
		return nil
	}
	return &s.Nodes[i]
}

// NodeID is the id events give the node with key k: its metadata id when
// it is observed, else the consumer's name.
func (s *State) NodeID(k NodeKey) string {
	if n := s.Node(k); n != nil && n.ID != "" {
		return n.ID
	}
	return k.Consumer
}

// NodeIDs is NodeID of every key, sorted: an event's affectedNodes.
func (s *State) NodeIDs(keys []NodeKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = s.NodeID(k)
	}
	slices.Sort(ids)
	return ids
}

// GroupOf returns the group of n, or the zero Group for an ungrouped node.
func (s *State) GroupOf(n *Node) *Group {
	if n.Group == "" {
		return &s.none
	}
	lo, hi := 0, len(s.Groups)
	for lo < hi {
		m := (lo + hi) / 2
		if s.Groups[m].Name < n.Group {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(s.Groups) && s.Groups[lo].Name == n.Group {
		return &s.Groups[lo]
	}
	return &s.none
}
