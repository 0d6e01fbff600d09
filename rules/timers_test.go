package rules

import (
	"encoding/json"
	"testing"
)

// An evaluator that takes over another's timers fires a pending alert when
// the first one's `for` ends, not a whole `for` after taking over, and
// keeps its cooldowns.
func TestTimersCarryOver(t *testing.T) {
	set := mustSet(t, `
version: 1
name: t
rules:
  - name: lag
    when: node.messagesWaiting > 10
    for: 10s
    cooldown: 30s
    pattern: lag
`)
	lag := flowState(nodeSpec{id: "n1", waiting: 50}, nodeSpec{id: "n2"})
	calm := flowState(nodeSpec{id: "n1"}, nodeSpec{id: "n2"})

	first := NewEvaluator(set, seqIDs())
	for s := 0; s <= 6; s++ {
		first.Eval(at(s), lag)
	}
	ts := first.Timers(at(6))
	if len(ts) != 1 || ts[0].Node.Consumer != "n1" || !ts[0].Pending.Equal(at(0)) || !ts[0].Cooldown.IsZero() {
		t.Fatalf("timers %+v, want n1 pending since 0s", ts)
	}
	// Through JSON, as they are kept.
	raw, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	var back []Timer
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}

	second := NewEvaluator(set, seqIDs())
	if n := second.RestoreTimers(append(back, Timer{Rule: "gone", Pending: at(0)})); n != 1 {
		t.Fatalf("restored %d timers, want 1 (the rule gone is skipped)", n)
	}
	if got := transitions(second.Eval(at(9), lag)); got != "" {
		t.Fatalf("at 9s: %q, want still pending", got)
	}
	if got := transitions(second.Eval(at(10), lag)); got != "fire lag n1" {
		t.Fatalf("at 10s: %q, want the fire the first evaluator would have made", got)
	}
	// Resolved, the key cools down; the cooldown carries over too.
	second.Eval(at(11), calm)
	ts = second.Timers(at(11))
	if len(ts) != 1 || !ts[0].Pending.IsZero() || !ts[0].Cooldown.Equal(at(41)) {
		t.Fatalf("timers after the resolve %+v, want n1 cooling down until 41s", ts)
	}
	third := NewEvaluator(set, seqIDs())
	third.RestoreTimers(ts)
	for s := 12; s <= 40; s++ {
		if got := transitions(third.Eval(at(s), lag)); got != "" {
			t.Fatalf("at %ds, inside the cooldown: %q", s, got)
		}
	}
	if n := len(third.Timers(at(60))); n != 1 {
		t.Fatalf("%d timers at 60s, want the one pending alert (the cooldown is over)", n)
	}
}
