package demo

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/sdk/events"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// ev is an event of typ about node (empty: the system) with pattern, in
// incident corr, received sec seconds after t0.
func ev(typ, node, pattern, corr string, sec float64) seenEvent {
	raw, _ := json.Marshal(map[string]string{"nodeId": node, "pattern": pattern})
	env := events.Envelope{Type: typ, Payload: raw, Context: events.Context{ID: typ + node + corr, CorrelationID: corr}}
	return newSeenEvent(env, t0.Add(time.Duration(sec*float64(time.Second))))
}

func TestExpectationDetect(t *testing.T) {
	failure := expectation{typ: events.TypeNodeDown, pattern: "node-failure", nodes: []string{"orders-eu-2"}}
	partition := expectation{typ: events.TypeNodeDown, pattern: "partition", nodes: []string{"orders-us-1", "orders-us-2", "orders-us-3"}}
	overload := expectation{typ: events.TypeSystemDown, pattern: "overload"}
	tests := []struct {
		name       string
		x          expectation
		evs        []seenEvent
		ok         bool
		at         float64
		unexpected []string
	}{
		{"node failure", failure, []seenEvent{ev("node.down", "orders-eu-2", "node-failure", "a", 2.5)}, true, 2.5, nil},
		{"another node's failure", failure, []seenEvent{ev("node.down", "orders-eu-1", "node-failure", "a", 2)}, false, 0,
			[]string{"node.down node-failure orders-eu-1"}},
		{"wrong pattern", failure, []seenEvent{ev("node.down", "orders-eu-2", "flapping", "a", 2)}, false, 0,
			[]string{"node.down flapping orders-eu-2"}},
		{"failure and a false alarm", failure, []seenEvent{
			ev("node.down", "orders-eu-2", "node-failure", "a", 2),
			ev("system.down", "", "overload", "b", 3),
		}, true, 2, []string{"system.down overload"}},
		{"partition, one incident", partition, []seenEvent{
			ev("node.down", "orders-us-1", "partition", "p", 2),
			ev("node.down", "orders-us-2", "partition", "p", 2),
			ev("node.down", "orders-us-3", "partition", "p", 2.1),
		}, true, 2.1, nil},
		{"partition, one node missing", partition, []seenEvent{
			ev("node.down", "orders-us-1", "partition", "p", 2),
			ev("node.down", "orders-us-2", "partition", "p", 2),
		}, false, 0, []string{"node.down partition orders-us-1", "node.down partition orders-us-2"}},
		{"partition split in two incidents", partition, []seenEvent{
			ev("node.down", "orders-us-1", "partition", "p", 2),
			ev("node.down", "orders-us-2", "partition", "q", 2),
			ev("node.down", "orders-us-3", "partition", "q", 2),
		}, false, 0, []string{"node.down partition orders-us-1", "node.down partition orders-us-2", "node.down partition orders-us-3"}},
		{"partition first called node failures", partition, []seenEvent{
			ev("node.down", "orders-us-1", "node-failure", "f", 1),
			ev("node.up", "orders-us-1", "node-failure", "f", 2),
			ev("node.down", "orders-us-1", "partition", "p", 2),
			ev("node.down", "orders-us-2", "partition", "p", 2),
			ev("node.down", "orders-us-3", "partition", "p", 2),
		}, true, 2, []string{"node.down node-failure orders-us-1"}},
		{"overload", overload, []seenEvent{ev("system.down", "", "overload", "o", 8)}, true, 8, nil},
		{"overload seen as bottlenecks", overload, []seenEvent{
			ev("node.down", "orders-eu-1", "bottleneck", "b1", 12),
			ev("node.down", "orders-eu-2", "bottleneck", "b2", 12),
		}, false, 0, []string{"node.down bottleneck orders-eu-1", "node.down bottleneck orders-eu-2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			det := tc.x.detect(tc.evs)
			if det.ok != tc.ok {
				t.Fatalf("detected %v, want %v", det.ok, tc.ok)
			}
			if tc.ok && !det.at.Equal(t0.Add(time.Duration(tc.at*float64(time.Second)))) {
				t.Errorf("detected at %v, want t0+%vs", det.at.Sub(t0), tc.at)
			}
			var downs []seenEvent
			if det.ok {
				downs = det.downs
			}
			if got := tc.x.unexpected(tc.evs, downs); !reflect.DeepEqual(got, tc.unexpected) {
				t.Errorf("unexpected = %q, want %q", got, tc.unexpected)
			}
		})
	}
}

func TestEnded(t *testing.T) {
	downs := []seenEvent{
		ev("node.down", "orders-us-1", "partition", "p", 2),
		ev("node.down", "orders-us-2", "partition", "p", 2),
	}
	evs := append(downs[:2:2],
		ev("node.up", "orders-us-1", "partition", "p", 5),
		ev("node.up", "orders-us-2", "partition", "other", 5), // another incident's
	)
	if _, ok := ended(downs, evs); ok {
		t.Fatal("ended by another incident's node.up")
	}
	evs = append(evs, ev("node.up", "orders-us-2", "partition", "p", 6))
	at, ok := ended(downs, evs)
	if !ok || !at.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("ended = %v at t0+%v, want true at t0+6s", ok, at.Sub(t0))
	}
	sys := []seenEvent{ev("system.down", "", "overload", "o", 8)}
	if _, ok := ended(sys, append(sys, ev("node.up", "", "overload", "o", 9))); ok {
		t.Fatal("a system.down ended by a node.up")
	}
	if _, ok := ended(sys, append(sys, ev("system.up", "", "overload", "o", 20))); !ok {
		t.Fatal("a system.down not ended by its system.up")
	}
}

func TestWriteSummary(t *testing.T) {
	res := &Result{Phases: []PhaseResult{
		{Fault: "node failure", Target: "orders-eu-2", Expected: "node.down node-failure (orders-eu-2)",
			Detected: true, TimeToDetect: 2340 * time.Millisecond, Recovered: true, TimeToRecover: 3 * time.Second, Settled: true},
		{Fault: "partition", Target: "group us", Expected: "node.down partition (orders-us-1..3, one incident)",
			Detected: false, Settled: true, Unexpected: []string{"node.down node-failure orders-us-1"}},
		{Fault: "bottleneck", Target: "orders-eu-1", Expected: "node.down bottleneck (orders-eu-1)",
			Detected: true, TimeToDetect: 14 * time.Second, Recovered: false, Settled: false},
	}}
	var b strings.Builder
	if err := WriteSummary(&b, res); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := [][]string{
		SummaryHeader,
		{"node failure: orders-eu-2", "node.down node-failure (orders-eu-2)", "yes", "2.3s", "yes, in 3.0s"},
		{"partition: group us", "node.down partition (orders-us-1..3, one incident)", "no (saw node.down node-failure orders-us-1)", "-", "-"},
		{"bottleneck: orders-eu-1", "node.down bottleneck (orders-eu-1)", "yes", "14.0s", "no (flow did not settle)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	// Columns line up: each cell starts where its header does.
	var starts []int
	for _, h := range SummaryHeader {
		starts = append(starts, strings.Index(lines[0], h))
	}
	for i, l := range lines {
		for j, cell := range want[i] {
			end := len(l)
			if j+1 < len(starts) {
				end = starts[j+1]
			}
			if got := strings.TrimSpace(l[starts[j]:end]); got != cell {
				t.Errorf("line %d column %q = %q, want %q", i, SummaryHeader[j], got, cell)
			}
		}
	}
	if res.OK() {
		t.Error("Result.OK with faults missed")
	}
}

func TestResultOK(t *testing.T) {
	good := PhaseResult{Detected: true, Recovered: true, Settled: true}
	full := func(ps ...PhaseResult) *Result { return &Result{Phases: ps} }
	tests := []struct {
		name string
		r    *Result
		ok   bool
	}{
		{"all four", full(good, good, good, good), true},
		{"nil", nil, false},
		{"interrupted after three", full(good, good, good), false},
		{"one missed", full(good, good, PhaseResult{Recovered: true}, good), false},
		{"one not recovered", full(good, good, PhaseResult{Detected: true}, good), false},
		{"a false alarm", full(good, PhaseResult{Detected: true, Recovered: true, Unexpected: []string{"x"}}, good, good), false},
		// Settling is shown, not judged: detection and recovery are.
		{"not settled", full(good, good, good, PhaseResult{Detected: true, Recovered: true}), true},
	}
	for _, tc := range tests {
		if got := tc.r.OK(); got != tc.ok {
			t.Errorf("%s: OK = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestIDRange(t *testing.T) {
	tests := []struct {
		ids  []string
		want string
	}{
		{[]string{"orders-us-1", "orders-us-2", "orders-us-3"}, "orders-us-1..3"},
		{[]string{"orders-eu-2"}, "orders-eu-2"},
		{[]string{"a-1", "b-2"}, "a-1, b-2"},
		{[]string{"x", "y"}, "x, y"},
		{[]string{"a-1", "a-1-2"}, "a-1, a-1-2"},
	}
	for _, tc := range tests {
		if got := idRange(tc.ids); got != tc.want {
			t.Errorf("idRange(%q) = %q, want %q", tc.ids, got, tc.want)
		}
	}
}
