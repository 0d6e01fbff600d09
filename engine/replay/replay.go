// Package replay runs an engine recording (package record) through rulesets
// as fast as it can, with the engine's own code: the flow.Tracker configured
// as engine.New configures it, the rules.Evaluator as the engine runs it,
// the engine's handling of blind spells, and its mapping of transitions to
// events. What comes out is the events the engine would have emitted, at
// the times of the recorded ticks.
//
// Several rulesets are replayed in one pass: the flow does not depend on
// the rules, so it is computed once and every ruleset judges it. Diff
// compares two replays; ToTest turns a recording into a rules test file.
package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/record"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
)

// Source yields a recording's entries in order, and io.EOF after the last;
// *record.Reader is one.
type Source interface {
	Next() (record.Entry, error)
}

// Event is one event the engine would have emitted.
type Event struct {
	At            time.Time // the tick's time
	Type          string
	Node          string // nodeId of node events
	Stream        string // of node events
	Consumer      string
	Pattern       string
	Rule          string
	Level         string   // down events
	Group         string   // node.down
	AffectedNodes []string // down events, sorted
	// Incident stands for the correlationId: #1, #2 ... in the order the
	// incidents began, numbered per replayed ruleset.
	Incident    string
	DownSeconds float64 // up events
	Reason      string  // up events; "" is cleared
}

// Line is e as one line of text, with its time and its offset from start.
func (e Event) Line(start time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %9s  %-11s", e.At.UTC().Format(timeFormat), offset(e.At.Sub(start)), e.Type)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	kv("node", e.Node)
	kv("pattern", e.Pattern)
	kv("rule", e.Rule)
	kv("level", e.Level)
	if strings.HasSuffix(e.Type, ".up") {
		kv("reason", e.Reason)
		kv("down", strconv.FormatFloat(e.DownSeconds, 'f', 1, 64)+"s")
	}
	kv("incident", e.Incident)
	return b.String()
}

// timeFormat is RFC 3339 with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// offset is d as +12.345s.
func offset(d time.Duration) string {
	return "+" + strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}

// JSON is e as one JSON object, with its offset from start in seconds.
func (e Event) JSON(start time.Time) []byte {
	b, _ := json.Marshal(struct {
		At            string   `json:"at"`
		Offset        float64  `json:"offset"`
		Type          string   `json:"type"`
		Node          string   `json:"nodeId,omitempty"`
		Stream        string   `json:"stream,omitempty"`
		Consumer      string   `json:"consumer,omitempty"`
		Pattern       string   `json:"pattern,omitempty"`
		Rule          string   `json:"rule,omitempty"`
		Level         string   `json:"level,omitempty"`
		Group         string   `json:"group,omitempty"`
		AffectedNodes []string `json:"affectedNodes,omitempty"`
		Incident      string   `json:"incident"`
		DownSeconds   *float64 `json:"downSeconds,omitempty"`
		Reason        string   `json:"reason,omitempty"`
	}{
		At: e.At.UTC().Format(timeFormat), Offset: math.Round(e.At.Sub(start).Seconds()*1000) / 1000, Type: e.Type,
		Node: e.Node, Stream: e.Stream, Consumer: e.Consumer, Pattern: e.Pattern, Rule: e.Rule,
		Level: e.Level, Group: e.Group, AffectedNodes: e.AffectedNodes, Incident: e.Incident,
		DownSeconds: upSeconds(e), Reason: e.Reason,
	})
	return b
}

func upSeconds(e Event) *float64 {
	if !strings.HasSuffix(e.Type, ".up") {
		return nil
	}
	s := e.DownSeconds
	return &s
}

// Result is what one ruleset made of a recording.
type Result struct {
	Set    *rules.Set
	Events []Event
	// RuleErrors are expression run-time errors, each once: a rule that
	// cannot be evaluated neither fires nor resolves.
	RuleErrors []string
}

// Replay is the outcome of one pass over a recording.
type Replay struct {
	Header     record.Header
	Start, End time.Time // of the first and last entry: what was replayed
	Ticks      int       // successful samples
	Blind      int       // failed samples
	Runs       int       // engine runs (1 plus the restarts appended)
	Dropped    uint64    // ticks the recorder dropped
	// Notes are what a replay cannot mirror, such as ticks the recorder
	// dropped: there the engine saw a sample the replay does not.
	Notes   []string
	Results []*Result // one per ruleset, in the order given
}

// maxRuleErrors bounds RuleErrors; a rule failing on every node of a large
// recording would otherwise fill memory with one message per node.
const maxRuleErrors = 50

// judge is one ruleset's evaluator and the state emit keeps beside it, as
// the engine keeps it.
type judge struct {
	res   *Result
	ev    *rules.Evaluator
	downs map[string]string // incident id|node key -> the id its down named
	seen  map[string]bool   // rule errors reported
	tick  []Event           // this tick's events, sorted before they are kept
}

// Run replays src, whose first run's header is hdr, through every set.
func Run(src Source, hdr record.Header, sets ...*rules.Set) (*Replay, error) {
	if len(sets) == 0 {
		return nil, errors.New("replay: no ruleset")
	}
	if hdr.Interval <= 0 {
		return nil, fmt.Errorf("replay: the recording's interval %v is not positive", hdr.Interval)
	}
	iv := hdr.Interval
	rp := &Replay{Header: hdr, Runs: 1}
	judges := make([]*judge, len(sets))
	for i, set := range sets {
		j := &judge{res: &Result{Set: set}, downs: map[string]string{}, seen: map[string]bool{}}
		n := 0
		j.ev = newEvaluator(set, iv, func() string { n++; return "#" + strconv.Itoa(n) }, j.ruleError)
		judges[i] = j
		rp.Results = append(rp.Results, j.res)
	}
	e := newEngine(iv)
	for {
		ent, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rp.Start.IsZero() && (ent.Kind == record.Tick || ent.Kind == record.Blind) {
			rp.Start = ent.At
		}
		switch ent.Kind {
		case record.Run:
			if ent.Header.Interval != iv {
				return nil, fmt.Errorf("%s: the engine was restarted at interval %v, the recording began at %v: replay the runs one at a time", ent.Pos, ent.Header.Interval, iv)
			}
			rp.Runs++
			e.restart(judges)
		case record.Dropped:
			rp.Dropped += ent.Dropped
			rp.Notes = append(rp.Notes, fmt.Sprintf("%s: the recorder dropped %d ticks here (its disk fell behind); the engine saw samples the replay does not", ent.Pos, ent.Dropped))
		case record.Blind:
			rp.Blind++
			rp.End = ent.At
			e.goBlind(ent.At)
		case record.Tick:
			rp.Ticks++
			rp.End = ent.At
			e.tick(ent.Snapshot, judges)
		}
	}
	return rp, nil
}

func newEvaluator(set *rules.Set, iv time.Duration, ids func() string, onErr func(*rules.Rule, string, error)) *rules.Evaluator {
	return rules.NewEvaluator(set, rules.ForInterval(iv), rules.WithIDs(ids), rules.OnError(onErr))
}

func (j *judge) ruleError(r *rules.Rule, subject string, err error) {
	msg := fmt.Sprintf("rule %s (%s) on %q: %v", r.Name, r.Pos, subject, err)
	if j.seen[msg] || len(j.res.RuleErrors) >= maxRuleErrors {
		return
	}
	j.seen[msg] = true
	j.res.RuleErrors = append(j.res.RuleErrors, msg)
}

// engine is the part of engine.Engine's tick that decides what the flow
// tracker and the evaluators see: its blind spells and their aftermath.
type engine struct {
	iv         time.Duration
	cfg        flow.Config
	tr         *flow.Tracker
	blind      bool
	blindSince time.Time
	lastOK     time.Time
	holdUntil  time.Time
}

func newEngine(iv time.Duration) *engine {
	// engine.New fills every zero field of its flow config from
	// flow.ForInterval; `happen engine` leaves them all zero.
	cfg := flow.ForInterval(iv)
	return &engine{iv: iv, cfg: cfg, tr: flow.NewTracker(cfg)}
}

// restart is a new engine process: fresh flow windows, no pending alert.
// Open incidents go on, as the engine restores them from its state bucket.
func (e *engine) restart(judges []*judge) {
	e.tr = flow.NewTracker(e.cfg)
	e.blind, e.lastOK, e.holdUntil = false, time.Time{}, time.Time{}
	for _, j := range judges {
		j.ev.DropPending()
	}
}

func (e *engine) goBlind(at time.Time) {
	if !e.blind {
		e.blindSince = at
	}
	e.blind = true
}

// tick mirrors engine.Tick after a successful sample, and returns the
// flow it computed.
func (e *engine) tick(snap flow.Snapshot, judges []*judge) *flow.State {
	at := snap.At
	if e.blind {
		e.blind = false
		for _, j := range judges {
			j.ev.DropPending()
		}
		gap := at.Sub(e.blindSince)
		if !e.lastOK.IsZero() {
			gap = at.Sub(e.lastOK)
		}
		if reset := flow.BlindReset(e.iv); gap >= reset {
			e.tr.Reset()
			e.holdUntil = at.Add(e.cfg.WarmUp + reset)
		}
	}
	e.lastOK = at
	st := e.tr.Update(snap)
	flow.Annotate(st, &snap.Signals, at)
	for _, j := range judges {
		var trs []rules.Transition
		if at.Before(e.holdUntil) {
			trs = j.ev.Leave(at, st.Left)
		} else {
			trs = j.ev.Eval(at, st)
		}
		j.emit(at, trs, st)
	}
	return st
}

// emit maps transitions to events as engine.emit does.
func (j *judge) emit(at time.Time, trs []rules.Transition, st *flow.State) {
	if len(trs) == 0 {
		return
	}
	out := j.tick[:0]
	for _, tr := range trs {
		inc := tr.Incident
		r := inc.Rule
		downKey := inc.ID + "|" + tr.Node.String()
		ev := Event{At: at, Pattern: r.Pattern, Rule: r.Name, Incident: inc.ID}
		switch {
		case tr.Kind == rules.Fire && r.Emit == events.TypeNodeDown:
			ev.Type, ev.Level = events.TypeNodeDown, r.Level
			ev.Node, ev.Stream, ev.Consumer = st.NodeID(tr.Node), tr.Node.Stream, tr.Node.Consumer
			ev.AffectedNodes = st.NodeIDs(inc.Nodes)
			if n := st.Node(tr.Node); n != nil {
				ev.Group = n.Group
			}
			j.downs[downKey] = ev.Node
		case tr.Kind == rules.Fire:
			ev.Type, ev.Level = events.TypeSystemDown, r.Level
			ev.AffectedNodes = st.NodeIDs(inc.Nodes)
			j.downs[downKey] = ""
		default:
			id, had := j.downs[downKey]
			delete(j.downs, downKey)
			ev.DownSeconds, ev.Reason = tr.At.Sub(inc.Since).Seconds(), tr.Reason
			if r.Emit == events.TypeNodeDown {
				ev.Type, ev.Stream, ev.Consumer = events.TypeNodeUp, tr.Node.Stream, tr.Node.Consumer
				ev.Node = st.NodeID(tr.Node)
				if had {
					ev.Node = id // the id it went down with, even if it left
				}
			} else {
				ev.Type = events.TypeSystemUp
			}
		}
		out = append(out, ev)
	}
	// The evaluator walks some of its state in map order; within a tick, a
	// fixed order keeps replays of one recording identical.
	sort.SliceStable(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.Incident != y.Incident {
			return incidentNumber(x.Incident) < incidentNumber(y.Incident)
		}
		if x.Type != y.Type {
			return x.Type < y.Type
		}
		return x.Node < y.Node
	})
	j.res.Events = append(j.res.Events, out...)
	j.tick = out[:0]
}

func incidentNumber(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "#"))
	return n
}

// Open replays the recording at path through every set: the whole rotated
// set when path is its base name (see record.Open). warn receives what the
// reader tolerates and what the replay cannot mirror.
func Open(path string, warn func(string), sets ...*rules.Set) (*Replay, error) {
	r, err := record.Open(path, warn)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rp, err := Run(r, r.Header(), sets...)
	if err != nil {
		return nil, err
	}
	if warn != nil {
		for _, n := range rp.Notes {
			warn(n)
		}
	}
	return rp, nil
}
