// Package flowsim is a deterministic, seeded simulation of JetStream streams
// and pull consumers, for testing flow detection without a server. It steps
// a simple model of publishing, delivery, processing and acking at a fine
// step (20ms by default) and, at every sampling tick (1s by default, with a
// little jitter, as a real ticker has), returns the flow.Snapshot a sampler
// would have read at that moment.
//
// The model is deliberately small; it is a test generator, not a server:
//
//   - A stream is a sequence counter fed by one publish process (steady,
//     bursty, trickle, batches or silent) times a load multiplier that faults
//     raise (spikes, ramps). Every consumer of a stream sees every message:
//     consumers have no filter subjects, as unfiltered JetStream consumers.
//   - A consumer is a pull consumer with one client. While the client is
//     connected it keeps one pull request open (NumWaiting 1), takes
//     deliveries into a buffer of Prefetch messages (bounded, with the
//     messages it holds unacked, by MaxAckPending), processes the buffer at
//     its capacity and acks what it processed in its ack style: each message,
//     all it holds every C seconds, or all it holds once N are held.
//     Periodic pauses stop processing and acking (not the server's
//     deliveries into the buffer, which the open pull request still takes).
//   - A crash drops the client: NumWaiting 0, no deliveries, no acks; what
//     it held stays ack-pending on the server and becomes due for
//     redelivery AckWait after its delivery. A restarted client starts
//     empty and takes due redeliveries before new messages. A live client
//     never lets a message outlive AckWait: scenarios keep holding times
//     well below it.
//   - Ack floors are derived (Delivered - NumAckPending): acks are in order.
//
// Scenarios are plain data (Scenario); Healthy and Faulty draw random ones
// for property tests, Faulty together with the Outcome a detector should
// report.
package flowsim

import (
	"fmt"
	"strings"
	"time"
)

// PublishKind is the shape of a stream's publishing.
type PublishKind int

// Publish shapes.
const (
	Silent  PublishKind = iota // nothing is published
	Steady                     // Poisson arrivals at Rate
	Bursty                     // Rate, plus BurstRate for BurstLen about every BurstEvery
	Trickle                    // single messages, exponential gaps of mean Gap
	Batches                    // Batch messages at once every Every (±20%)
)

func (k PublishKind) String() string {
	switch k {
	case Silent:
		return "silent"
	case Steady:
		return "steady"
	case Bursty:
		return "bursty"
	case Trickle:
		return "trickle"
	case Batches:
		return "batches"
	}
	return fmt.Sprintf("PublishKind(%d)", int(k))
}

// Publish is a stream's publish process before any load fault.
type Publish struct {
	Kind       PublishKind
	Rate       float64       // Steady: msgs/s; Bursty: the rate between bursts
	BurstRate  float64       // Bursty: extra msgs/s during a burst
	BurstLen   time.Duration // Bursty: how long a burst lasts
	BurstEvery time.Duration // Bursty: mean time between burst starts (uniform ±50%)
	Gap        time.Duration // Trickle: mean gap between messages
	Batch      int           // Batches: messages published at once
	Every      time.Duration // Batches: time between batches (uniform ±20%)
}

// MeanRate is the long-run publish rate in msgs/s, before load faults.
func (p Publish) MeanRate() float64 {
	switch p.Kind {
	case Steady:
		return p.Rate
	case Bursty:
		if p.BurstEvery <= 0 {
			return p.Rate
		}
		return p.Rate + p.BurstRate*p.BurstLen.Seconds()/p.BurstEvery.Seconds()
	case Trickle:
		if p.Gap <= 0 {
			return 0
		}
		return 1 / p.Gap.Seconds()
	case Batches:
		if p.Every <= 0 {
			return 0
		}
		return float64(p.Batch) / p.Every.Seconds()
	}
	return 0
}

func (p Publish) String() string {
	switch p.Kind {
	case Steady:
		return fmt.Sprintf("steady %.1f/s", p.Rate)
	case Bursty:
		return fmt.Sprintf("bursty %.1f/s +%.0f/s for %v every ~%v", p.Rate, p.BurstRate, p.BurstLen, p.BurstEvery)
	case Trickle:
		return fmt.Sprintf("trickle 1 per ~%v", p.Gap)
	case Batches:
		return fmt.Sprintf("batches of %d every ~%v", p.Batch, p.Every)
	}
	return p.Kind.String()
}

// Stream is one simulated stream.
type Stream struct {
	Name    string
	Publish Publish
	// InitialSeq is the stream's last sequence when the run starts, so
	// counters do not all start at zero as on a fresh server.
	InitialSeq uint64
}

// AckKind is how a consumer's client acknowledges.
type AckKind int

// Ack styles.
const (
	AckEach     AckKind = iota // every message as soon as it is processed
	AckInterval                // everything held, every Ack.Every
	AckCount                   // everything held, once Ack.Count are held
)

// Ack is a consumer's ack style.
type Ack struct {
	Kind  AckKind
	Every time.Duration // AckInterval: the cadence
	Count int           // AckCount: how many are held before acking
}

func (a Ack) String() string {
	switch a.Kind {
	case AckInterval:
		return fmt.Sprintf("acks every %v", a.Every)
	case AckCount:
		return fmt.Sprintf("acks per %d", a.Count)
	}
	return "acks each"
}

// Pause is a periodic stop of processing and acking, like a GC pause or a
// flush: For out of every Every.
type Pause struct {
	Every, For time.Duration
}

// Consumer is one simulated pull consumer: one node.
type Consumer struct {
	ID     string // node id and consumer name
	Group  string
	Stream string
	// Shape names the node's behaviour for failure messages.
	Shape string

	Capacity      float64 // msgs/s the client processes; 0 = unlimited
	Prefetch      int     // client buffer; 0 = 2s of capacity, within [10, 500]
	MaxAckPending int     // 0 = 1000
	AckWait       time.Duration
	Ack           Ack
	Pause         Pause

	// CreatedAt is when the consumer is created, since the start of the
	// run; 0 = it exists before the run starts.
	CreatedAt time.Duration
	// DeletedAt is when it is deleted, since the start; 0 = never. From
	// then on it is absent from snapshots.
	DeletedAt time.Duration
}

// Defaults of Consumer.
const (
	DefaultMaxAckPending = 1000
	DefaultAckWait       = 30 * time.Second
)

// FaultKind is what a Fault does.
type FaultKind int

// Faults.
const (
	Crash    FaultKind = iota + 1 // Node's client drops
	Restart                       // Node's client comes back
	Slow                          // Node's capacity falls to Fraction of its stream's current mean rate
	CutGroup                      // every consumer of Group crashes at once
	Load                          // Stream's (or every stream's) publishing rises to Factor
)

func (k FaultKind) String() string {
	switch k {
	case Crash:
		return "crash"
	case Restart:
		return "restart"
	case Slow:
		return "slow"
	case CutGroup:
		return "cut-group"
	case Load:
		return "load"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is one thing done to the system at a time.
type Fault struct {
	At       time.Duration // since the start of the run
	Kind     FaultKind
	Node     string  // Crash, Restart, Slow
	Group    string  // CutGroup
	Fraction float64 // Slow
	// Load: Stream ("" = every stream) publishes Factor times its normal
	// rate, reached linearly over Rise (0 = at once: a spike), held for
	// Hold (0 = to the end), then back to normal at once.
	Stream string
	Factor float64
	Rise   time.Duration
	Hold   time.Duration
}

func (f Fault) String() string {
	switch f.Kind {
	case Crash, Restart:
		return fmt.Sprintf("%s %s", f.Kind, f.Node)
	case Slow:
		return fmt.Sprintf("slow %s to %.0f%% of its arrivals", f.Node, 100*f.Fraction)
	case CutGroup:
		return fmt.Sprintf("cut group %s", f.Group)
	case Load:
		s := f.Stream
		if s == "" {
			s = "every stream"
		}
		hold := "to the end"
		if f.Hold > 0 {
			hold = "for " + f.Hold.String()
		}
		return fmt.Sprintf("load ×%.2f on %s, rising over %v, held %s", f.Factor, s, f.Rise, hold)
	}
	return f.Kind.String()
}

// Scenario is everything a run simulates. Zero timing fields take defaults.
type Scenario struct {
	Name      string
	Seed      uint64    // drives every random choice of the run
	Start     time.Time // zero: 2026-01-01T00:00:00Z
	Duration  time.Duration
	Interval  time.Duration // sampling interval; 0 = 1s
	Step      time.Duration // simulation step; 0 = 20ms
	Jitter    time.Duration // sample times vary by up to ± this; 0 = 50ms, <0 = none
	Streams   []Stream
	Consumers []Consumer
	Faults    []Fault
}

func (sc Scenario) withDefaults() Scenario {
	if sc.Start.IsZero() {
		sc.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if sc.Interval <= 0 {
		sc.Interval = time.Second
	}
	if sc.Step <= 0 {
		sc.Step = 20 * time.Millisecond
	}
	if sc.Jitter == 0 {
		sc.Jitter = 50 * time.Millisecond
	}
	if sc.Jitter < 0 {
		sc.Jitter = 0
	}
	if sc.Duration <= 0 {
		sc.Duration = 2 * time.Minute
	}
	return sc
}

// Describe lists the scenario's streams, nodes and faults, one a line.
func (sc Scenario) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %q seed %d, %v\n", sc.Name, sc.Seed, sc.Duration)
	for _, s := range sc.Streams {
		fmt.Fprintf(&b, "  stream %-10s %s\n", s.Name, s.Publish)
	}
	for _, c := range sc.Consumers {
		capacity := "unlimited"
		if c.Capacity > 0 {
			capacity = fmt.Sprintf("%.1f/s", c.Capacity)
		}
		fmt.Fprintf(&b, "  node %-8s group %-4s stream %-10s %-22s cap %-9s %s", c.ID, c.Group, c.Stream, c.Shape, capacity, c.Ack)
		if c.Pause.Every > 0 {
			fmt.Fprintf(&b, ", pauses %v every %v", c.Pause.For, c.Pause.Every)
		}
		if c.CreatedAt > 0 {
			fmt.Fprintf(&b, ", created at %v", c.CreatedAt)
		}
		if c.DeletedAt > 0 {
			fmt.Fprintf(&b, ", deleted at %v", c.DeletedAt)
		}
		b.WriteByte('\n')
	}
	for _, f := range sc.Faults {
		fmt.Fprintf(&b, "  at %-8v %s\n", f.At, f)
	}
	return b.String()
}
