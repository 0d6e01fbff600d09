// Package events defines the JSON events happen publishes on NATS, as plain
// Go types. Applications that listen to happen.events.> and plugin authors
// both decode them with these types; the package imports nothing of happen.
package events

import (
	"encoding/json"
	"fmt"
)

// DefaultPrefix is where events are published unless the engine is told
// otherwise (--subject-prefix).
const DefaultPrefix = "happen.events"

// Event types, published on <prefix>.<type>.
const (
	TypeNodeDown      = "node.down"
	TypeNodeUp        = "node.up"
	TypeSystemDown    = "system.down"
	TypeSystemUp      = "system.up"
	TypeRulesReloaded = "rules.reloaded"
	TypeRulesRejected = "rules.rejected"
	TypeActionFailed  = "action.failed"
	// The engine's own server was cut from its cluster, and its end.
	TypeEngineIsolated = "engine.isolated"
	TypeEngineRejoined = "engine.rejoined"
)

// Levels of a down event.
const (
	LevelWarning  = "warning"
	LevelCritical = "critical"
)

// Envelope is every event on the wire.
type Envelope struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	Context Context         `json:"context"`
}

// Context says where an event comes from and what it belongs to.
type Context struct {
	ID            string `json:"id"`
	Timestamp     int64  `json:"timestamp"` // Unix milliseconds
	Sender        string `json:"sender"`
	CausationID   string `json:"causationId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// Decode unmarshals the payload into v.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("decode %s payload: %w", e.Type, err)
	}
	return nil
}

// LagMetrics is a node's flow when an event was raised.
type LagMetrics struct {
	MessagesWaiting     int     `json:"messagesWaiting"`
	NumPending          int     `json:"numPending"`
	AckPending          int     `json:"ackPending"`
	Redelivered         int     `json:"redelivered"`
	DeliveryRate        float64 `json:"deliveryRate"`
	AckRate             float64 `json:"ackRate"`
	LagGrowthRate       float64 `json:"lagGrowthRate"`
	WaitingPulls        int     `json:"waitingPulls"`
	SecondsSinceLastAck float64 `json:"secondsSinceLastAck"`
	// TimeLagSeconds is the age of the oldest message the node has not
	// finished (0 when nothing waits); TimeLagEstimated is true when it was
	// interpolated rather than read from the stream.
	TimeLagSeconds   float64 `json:"timeLagSeconds"`
	TimeLagEstimated bool    `json:"timeLagEstimated"`
	// SecondsToDrain is how long until what waits is finished at the
	// current rates: 0 when nothing waits, -1 while the backlog does not
	// shrink.
	SecondsToDrain float64 `json:"secondsToDrain"`
	// MessagesLost counts messages the stream's limits removed before the
	// node was delivered them; SecondsToLoss forecasts when they will
	// start to (0 while they do, -1 when no loss is in sight).
	MessagesLost  int     `json:"messagesLost"`
	SecondsToLoss float64 `json:"secondsToLoss"`
}

// NodeDown says one node is in trouble.
type NodeDown struct {
	NodeID        string     `json:"nodeId"`
	Pattern       string     `json:"pattern"`
	Rule          string     `json:"rule"`
	Level         string     `json:"level"`
	Stream        string     `json:"stream"`
	Consumer      string     `json:"consumer"`
	Group         string     `json:"group"`
	AffectedNodes []string   `json:"affectedNodes"`
	LagMetrics    LagMetrics `json:"lagMetrics"`
}

// Reasons a node.up or system.up is sent. An empty reason means the
// condition cleared.
const (
	ReasonCleared    = ""
	ReasonLeft       = "left"       // the consumer or its stream was deleted
	ReasonSuperseded = "superseded" // a higher-priority rule took the node over
	ReasonRemoved    = "rule-removed"
)

// NodeUp ends a NodeDown; it carries the NodeDown's correlationId.
type NodeUp struct {
	NodeID      string  `json:"nodeId"`
	Pattern     string  `json:"pattern"`
	Rule        string  `json:"rule"`
	DownSeconds float64 `json:"downSeconds"`
	Reason      string  `json:"reason,omitempty"`
}

// SystemMetrics is the whole system's flow when a system event was raised.
type SystemMetrics struct {
	Nodes               int     `json:"nodes"`
	LaggingNodes        int     `json:"laggingNodes"`
	LaggingFraction     float64 `json:"laggingFraction"`
	MessagesWaiting     int     `json:"messagesWaiting"`
	PublishRate         float64 `json:"publishRate"`
	PublishRateBaseline float64 `json:"publishRateBaseline"`
}

// SystemDown says the system as a whole is in trouble.
type SystemDown struct {
	Level         string        `json:"level"`
	Pattern       string        `json:"pattern"`
	Rule          string        `json:"rule"`
	AffectedNodes []string      `json:"affectedNodes"`
	Metrics       SystemMetrics `json:"metrics"`
}

// SystemUp ends a SystemDown; it carries the SystemDown's correlationId.
type SystemUp struct {
	Pattern     string  `json:"pattern"`
	Rule        string  `json:"rule"`
	DownSeconds float64 `json:"downSeconds"`
	Reason      string  `json:"reason,omitempty"`
}

// RulesReloaded says a ruleset change took effect.
type RulesReloaded struct {
	Files []string `json:"files"`
	Rules int      `json:"rules"`
}

// RulesRejected says a ruleset change was refused; the previous rules stay.
type RulesRejected struct {
	File   string   `json:"file"`
	Errors []string `json:"errors"`
}

// ActionFailed says a plugin action failed after its retries.
type ActionFailed struct {
	Plugin  string `json:"plugin"`
	Action  string `json:"action"`
	Error   string `json:"error"`
	EventID string `json:"eventId"`
}

// EngineIsolated says the engine's own NATS server is cut from its cluster:
// it sees only its own side, so it reports nothing about nodes until it
// rejoins. The engine.rejoined that ends it carries its correlationId.
type EngineIsolated struct {
	Since int64 `json:"since"` // Unix milliseconds
	// ServersSeen is how many servers the engine's connection lists now;
	// ServersKnown the most it has listed, the cluster size it knew.
	ServersSeen  int    `json:"serversSeen"`
	ServersKnown int    `json:"serversKnown"`
	Reason       string `json:"reason"`
}

// EngineRejoined ends an EngineIsolated: the engine sees its cluster again
// and resumes judging once its flow windows have refilled.
type EngineRejoined struct {
	Since           int64   `json:"since"` // when the isolation began, Unix milliseconds
	IsolatedSeconds float64 `json:"isolatedSeconds"`
	ServersSeen     int     `json:"serversSeen"`
}
