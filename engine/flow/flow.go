// Package flow is happen's model of message flow: what one sample of
// JetStream says about each consumer and stream, and the metrics computed
// from a sliding window of samples for every node, every group and the whole
// system. It does no I/O; the Tracker is fed snapshots and is tested with
// plain tables.
package flow

import (
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// ConsumerSample is one reading of one consumer's state.
type ConsumerSample struct {
	Key    NodeKey
	NodeID string // metadata happen.node, else the consumer name
	Group  string // metadata happen.group, may be empty

	// At is the server's time when it gathered the state (ConsumerInfo.ts),
	// so ages below need no clock agreement between engine and server.
	At      time.Time
	Created time.Time

	NumPending     uint64 // matching messages not yet delivered
	NumAckPending  uint64 // delivered, not yet acknowledged
	NumRedelivered uint64 // messages redelivered and still unacknowledged
	NumWaiting     uint64 // open pull requests

	Delivered       uint64 // consumer sequence of the last delivery (counts redeliveries)
	DeliveredStream uint64
	AckFloor        uint64 // consumer sequence below which everything is acknowledged
	AckFloorStream  uint64

	LastDelivery time.Time // zero if never or unknown
	LastAck      time.Time // last ack of any message; zero if none since the server started

	// Leader is the server leading the consumer (clustered JetStream), empty
	// otherwise. A change is a failover: pull requests are lost with the old
	// leader and clients take a while to ask again.
	Leader string

	Push      bool
	PushBound bool
	Paused    bool
	AckNone   bool // the consumer takes no acks (AckPolicy none)
	// AckWait is the consumer's ack wait (0: unknown). A message held
	// longer is redelivered, so no normal ack cadence is longer.
	AckWait time.Duration

	// Advisory counters, cumulative since the engine started watching.
	MaxDeliveries uint64
	Naks          uint64
	Terminated    uint64
}

// StreamSample is one reading of one stream's state.
type StreamSample struct {
	Name    string
	At      time.Time
	LastSeq uint64
	Msgs    uint64
}

// Snapshot is everything one tick read.
type Snapshot struct {
	At        time.Time // engine time of the tick
	Streams   []StreamSample
	Consumers []ConsumerSample
	// Unobserved consumers exist but their state could not be read this tick.
	Unobserved []NodeKey
	// UnobservedStreams could not have their consumers listed this tick: every
	// consumer the tracker knows on them is unobserved, none has left.
	UnobservedStreams []string
}

// The flow the Tracker computes is the data rules read; it lives in the
// leaf package snapshot, so rules need not import the engine.
type (
	NodeKey = snapshot.NodeKey
	Node    = snapshot.Node
	Group   = snapshot.Group
	System  = snapshot.System
	State   = snapshot.State
)
