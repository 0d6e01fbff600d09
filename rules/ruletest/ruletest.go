// Package ruletest runs rule unit tests, as `promtool test rules` does for
// Prometheus: sampled JetStream state per node over time goes in, and the
// events the engine would emit come out and are compared with the events a
// test expects. The input runs through the engine's own flow.Tracker and
// rules.Evaluator, so a test says what the engine does, not what a copy of
// its logic would.
//
// # Test files
//
// A test file is YAML:
//
//	rules: [../default.yaml]   # ruleset files or folders, relative to this file;
//	                           # `builtin` is the ruleset compiled into happen
//	interval: 1s               # the sampling interval; default 1s
//	tests:
//	  - name: a node that stops acking while work keeps arriving
//	    duration: 30s          # optional; default: the longest series
//	    streams:
//	      ORDERS: 0+20x30      # the stream's last sequence at each tick
//	      EVENTS:              # or a mapping, for a stream with limits
//	        lastSeq: 0+20x30
//	        maxMsgs: 500       # optional: MaxMsgs
//	        maxAge: 1m         # optional: MaxAge
//	        discard: old       # optional: old (default) or new
//	        retention: limits  # optional: limits (default), interest or workqueue
//	        firstSeq: ...      # optional: the first sequence; default derived
//	        msgs: ...          # optional: messages held; default lastSeq-firstSeq+1
//	    nodes:
//	      eu-1:                # consumer name; the node id too unless id: is given
//	        id: orders-eu-1    # optional: happen.node metadata
//	        group: eu          # optional: happen.group metadata
//	        stream: ORDERS     # optional when the test has exactly one stream
//	        pending: 0x30      # num_pending; default 0
//	        delivered: 0+20x30 # the consumer's delivered sequence; default 0
//	        acked: 0+20x10 200x20
//	        ackPending: ...    # optional; default delivered - acked
//	        waitingPulls: 1x30 # open pull requests; default 1
//	        ackFloor: ...      # optional; default acked (acks in order)
//	        ackWait: 30s       # optional: the consumer's AckWait
//	    expect:
//	      - {at: 12s, type: node.down, node: eu-1, pattern: node-failure, level: critical, incident: a}
//	      - {at: 20s..24s, type: node.up, node: eu-1, incident: a}
//	      - {at: 40s, type: system.down, pattern: overload, nodes: [eu-1, us-1]}
//
// # Time
//
// Tick i is at i*interval: tick 0 at 0s. A test runs from 0s to its
// duration, both included, so `duration: 30s` at 1s is 31 ticks, exactly
// what `0x30` gives. Without duration the test runs as long as its longest
// series. Values past the end are ignored.
//
// # Series
//
// Series use promtool's expanding notation (see ParseSeries), exactly as
// promtool expands it: `axN` and `a+bxN` are N+1 values, `_xN` is N missing
// samples. `_` is a tick at which the node could not be read (unobserved:
// neither healthy nor failed, and watched afresh afterwards); at a stream,
// the stream is absent from that tick's sample. Any series of a node with
// `_` at a tick makes the node unobserved at that tick.
//
// A node exists while its series last: the series of one node must be
// equally long, and a node whose series end before the test does has left
// from the next tick on (its consumer was deleted: it leaves its incidents,
// raising node.up with reason left, and never node.down). A series that
// starts with `_` is a node that appears later. A stream whose series ends
// early is gone from then on.
//
// acked is the cumulative count of acknowledged deliveries. When acked is
// absent it is delivered - ackPending, or delivered when ackPending is absent
// too (everything delivered is acked at once). The server's LastAck is
// stamped with the tick's time whenever acked rises, and at a node's first
// sample when acked is above 0 there.
//
// # Streams
//
// A stream is its last sequence at each tick, or a mapping with that
// series as lastSeq and its limits. Message s counts as published at the
// first tick whose last sequence reaches s (what the stream holds when it
// is first seen, at that tick). Unless firstSeq is given (a `_` in it
// derives that tick), the first sequence is derived as its server would
// keep it: past what maxMsgs removes (unless discard is new, which
// refuses publishes instead), past what maxAge removes (messages older
// than maxAge), and on an interest or work-queue stream past what every
// node of the stream has acked (its ack floor); 0 while the stream is
// empty. maxBytes is not modelled.
//
// A node reads its whole stream: its delivered sequence and ack floor are
// also its stream sequences. The runner reads, for every node with work
// waiting, the message just past its ack floor (or the stream's first, if
// later), as the sampler does, so time lags in tests are exact. pending
// is what the test gives, not derived: model what a server would report
// (the messages past the node's position that the stream still holds).
//
// # Expectations
//
// Each item of expect is one event: type (node.down, node.up, system.down
// or system.up) and at (a tick time such as 12s, or an inclusive window
// such as 20s..24s) are required. The others are checked only when given:
// node (a node's name or id), pattern, rule, level and group (down events),
// nodes (the affectedNodes, in any order; down events), reason (up events:
// cleared, left, superseded or rule-removed) and incident. Events of one
// incident share a correlationId; incident labels name incidents, and the
// same label must be the same incident, different labels different ones.
//
// A test passes when every emitted event matches exactly one expectation
// and every expectation matches one event. A test with no expect list
// passes when nothing is emitted.
package ruletest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/happen-dev/happen/rules"
)

// File is one parsed test file, its rulesets loaded.
type File struct {
	Path     string
	Interval time.Duration
	Tests    []*Test

	set *rules.Set
}

// Test is one item of a file's tests list.
type Test struct {
	Name string
	Pos  rules.Position // of the test's name

	ticks   int
	streams []*streamSpec
	nodes   []*nodeSpec
	expect  []*Expectation
	// servers, when given, are heard with system access: the test's
	// engine sees these servers go away.
	hasServers bool
	servers    []*serverSpec
}

// serverSpec is a server that goes away during a test, as the engine's
// server signals would report it (flow.Signals).
type serverSpec struct {
	name            string
	down, lastHeard time.Duration // from the test's start
	announced       bool
}

// series kinds of a node, in the order they are read.
const (
	sPending = iota
	sDelivered
	sAcked
	sAckPending
	sWaitingPulls
	sAckFloor
	nSeries
)

var seriesNames = [nSeries]string{"pending", "delivered", "acked", "ackPending", "waitingPulls", "ackFloor"}

type streamSpec struct {
	name   string
	values []Sample // last sequence

	// Optional: given series, or nil to derive them (see the package doc).
	firstSeq, msgs []Sample
	retention      string // limits (default), interest or workqueue
	discardNew     bool
	maxMsgs        int64
	maxAge         time.Duration
}

// Retention policies a test stream may name.
const (
	retentionLimits    = "limits"
	retentionInterest  = "interest"
	retentionWorkQueue = "workqueue"
)

type nodeSpec struct {
	name, id, group, stream string
	pos                     rules.Position
	series                  [nSeries][]Sample // nil: not given
	seriesPos               [nSeries]rules.Position
	ackWait                 time.Duration
	length                  int // ticks it exists for
}

// Expectation is one expected event.
type Expectation struct {
	Pos      rules.Position
	From, To time.Duration // inclusive
	Type     string
	Node     string // node id; "" is not checked
	Pattern  string
	Rule     string
	Level    string
	Group    string
	Nodes    []string // sorted ids; checked when HasNodes
	HasNodes bool
	Reason   string // checked when HasReason; "" is cleared
	// HasReason says Reason is checked.
	HasReason bool
	Incident  string // label; "" is not checked
}

// Load reads one test file and loads the rulesets it names. A malformed
// file, or a ruleset that does not load, fails with rules.Errors: every
// fault as file:line:col: message.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rule test: %w", err)
	}
	return Parse(path, data)
}

// Paths expands the arguments of `happen rules test`: a file is itself, a
// folder is every *.yaml and *.yml file directly in it, in name order.
func Paths(args []string) ([]string, error) {
	var out []string
	for _, p := range args {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rule tests: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("rule tests: %w", err)
		}
		n := len(out)
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || strings.HasPrefix(name, ".") {
				continue
			}
			if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
				out = append(out, filepath.Join(p, name))
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("rule tests: %s: no test files (*.yaml or *.yml) in folder", p)
		}
	}
	return out, nil
}

// Diagnostics returns the faults of a failed Load or Parse as
// file:line:col: message lines; any other error is one line.
func Diagnostics(err error) []string {
	var diags rules.Errors
	if errors.As(err, &diags) {
		out := make([]string, len(diags))
		for i, d := range diags {
			out[i] = d.Error()
		}
		return out
	}
	return []string{err.Error()}
}
