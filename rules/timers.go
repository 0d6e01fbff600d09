package rules

import (
	"cmp"
	"slices"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// Timer is a rule's clock that can outlive its Evaluator, so that another
// engine taking over goes on where this one was: a pending alert's start
// (its condition held since then, waiting out its `for`), and a cooldown's
// end. Firing alerts are incidents, kept apart (Restore).
type Timer struct {
	Rule  string           `json:"rule"` // the rule's fingerprint
	Node  snapshot.NodeKey `json:"node,omitzero"`
	Group string           `json:"group,omitempty"`
	// Pending is when the alert's condition began to hold; zero for a
	// cooldown alone. Owed: its `for` passed during a cooldown.
	Pending time.Time `json:"pending,omitzero"`
	Owed    bool      `json:"owed,omitempty"`
	// Cooldown is when the key may fire again; zero for none.
	Cooldown time.Time `json:"cooldown,omitzero"`
}

func (t Timer) key() alertKey { return alertKey{rule: t.Rule, node: t.Node, group: t.Group} }

// Timers returns every pending alert and every cooldown not yet over at
// now, in a stable order: equal slices mean nothing changed.
func (e *Evaluator) Timers(now time.Time) []Timer {
	if len(e.cooldowns) == 0 && len(e.alerts) == 0 {
		return nil // the usual tick: called on every one, it allocates nothing
	}
	byKey := map[alertKey]*Timer{}
	var out []Timer
	add := func(k alertKey) *Timer {
		if t := byKey[k]; t != nil {
			return t
		}
		out = append(out, Timer{Rule: k.rule, Node: k.node, Group: k.group})
		t := &out[len(out)-1]
		byKey[k] = t
		return t
	}
	// Pointers into out are taken only while it does not grow past its
	// capacity: size it first.
	n := len(e.cooldowns)
	for _, a := range e.alerts {
		if a.state == pending {
			n++
		}
	}
	out = make([]Timer, 0, n)
	for k, a := range e.alerts {
		if a.state == pending {
			t := add(k)
			t.Pending, t.Owed = a.activeAt, a.owed
		}
	}
	for k, until := range e.cooldowns {
		if until.After(now) {
			add(k).Cooldown = until
		}
	}
	slices.SortFunc(out, func(a, b Timer) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Node.Stream, b.Node.Stream),
			cmp.Compare(a.Node.Consumer, b.Node.Consumer), cmp.Compare(a.Group, b.Group))
	})
	return out
}

// RestoreTimers takes up timers another evaluator left: a pending alert
// goes on from its start (judged at the next Eval like any pending alert,
// and dropped if its subject is not judged then), and a cooldown holds
// until its end. Timers of rules no longer in the set, and keys this
// evaluator already has an alert for, are skipped. It returns how many
// were taken up.
func (e *Evaluator) RestoreTimers(ts []Timer) int {
	rules := map[string]*Rule{}
	for _, r := range e.set.Rules {
		rules[r.Fingerprint] = r
	}
	n := 0
	for _, t := range ts {
		r := rules[t.Rule]
		if r == nil {
			continue
		}
		k := t.key()
		took := false
		if !t.Pending.IsZero() {
			if _, ok := e.alerts[k]; !ok {
				e.alerts[k] = &alert{rule: r, key: k, state: pending, activeAt: t.Pending, owed: t.Owed, seen: e.tick}
				took = true
			}
		}
		if !t.Cooldown.IsZero() {
			if until, ok := e.cooldowns[k]; !ok || until.Before(t.Cooldown) {
				e.cooldowns[k] = t.Cooldown
				took = true
			}
		}
		if took {
			n++
		}
	}
	return n
}
