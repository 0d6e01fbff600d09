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

	// Filtered is true when the consumer reads only some of its stream's
	// subjects (a filter subject or several).
	Filtered bool
	// OldestSeq and OldestTime are the stream sequence and publish time of
	// the oldest message the node has not finished (the first one past its
	// ack floor that it reads), as read from the stream. Both are zero when
	// no read stands for this sample: nothing waits, or the sampler's read
	// budget went to nodes further behind.
	OldestSeq  uint64
	OldestTime time.Time
}

// StreamSample is one reading of one stream's state.
type StreamSample struct {
	Name    string
	At      time.Time
	LastSeq uint64
	Msgs    uint64

	FirstSeq  uint64    // 0 for a stream that never held a message
	FirstTime time.Time // publish time of the first message; zero if none or unknown
	LastTime  time.Time // publish time of the last message; zero if none or unknown
	Bytes     uint64

	// The limits under which the stream removes messages on its own; zero
	// (or negative) for none. DiscardNew streams refuse publishes at
	// MaxMsgs and MaxBytes instead of removing old messages; MaxAge
	// removes them either way.
	MaxMsgs           int64
	MaxBytes          int64
	MaxAge            time.Duration
	MaxMsgsPerSubject int64
	DiscardNew        bool
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
	// Signals is what the servers said of themselves (evidence.go).
	Signals Signals
	// Share is set when the engine samples only its share of the streams,
	// several engines sharing the work; nil when it samples them all.
	Share *Share
}

// Share is which streams one engine of several sampled in a tick.
type Share struct {
	// Listed names every stream the stream list held, its own or not,
	// sorted; Owned those it sampled as theirs (observed or not). A node
	// whose stream is owned and which the tick does not show has left.
	Listed, Owned []string
}

// BlindReset is the longest blind spell (no sample at all) after which an
// engine sampling every interval keeps its flow windows: two samples
// missed, or 2s, whichever is longer. After a longer one the windows are
// Reset and incidents hold for a warm-up and this much more. The engine
// and its replay both judge blind spells by it.
func BlindReset(interval time.Duration) time.Duration {
	return max(2*time.Second, 2*interval)
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
