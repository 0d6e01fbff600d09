package replay

import (
	"fmt"
	"sort"
	"time"
)

// Change is an event one replay has and the other has not.
type Change struct {
	// Op is '-' for an event only in the first replay (A), '+' for one
	// only in the second (B).
	Op    byte
	Event Event
}

// Line is c as one line of text: its op, then the event's Line.
func (c Change) Line(start time.Time) string {
	return string(c.Op) + " " + c.Event.Line(start)
}

// Delta is what changes from one replay of a recording to another.
type Delta struct {
	Changes []Change // in time order, '-' before '+' at one time
	Alike   int      // events found in both
	OnlyA   int
	OnlyB   int
}

// Same reports whether the replays emitted the same events.
func (d Delta) Same() bool { return len(d.Changes) == 0 }

// Summary is one line saying how many events differ.
func (d Delta) Summary(nameA, nameB string) string {
	if d.Same() {
		return fmt.Sprintf("no change: %d events alike under %s and %s", d.Alike, nameA, nameB)
	}
	return fmt.Sprintf("%d events only under %s (-), %d only under %s (+), %d alike", d.OnlyA, nameA, d.OnlyB, nameB, d.Alike)
}

// Diff compares the events of two replays of one recording. An event of a
// matches one of b of the same type, node and pattern at most tolerance
// apart (the closest such); incident ids are not compared, as each replay
// numbers its own. What is left unmatched is the change.
func Diff(a, b []Event, tolerance time.Duration) Delta {
	type key struct{ typ, node, pattern string }
	byKey := map[key][]int{}
	for j, y := range b {
		k := key{y.Type, y.Node, y.Pattern}
		byKey[k] = append(byKey[k], j)
	}
	// Every pair that may match, closest first: an event is matched with
	// the nearest one the other replay has, not merely the first.
	type pair struct {
		i, j int
		gap  time.Duration
	}
	var pairs []pair
	for i, x := range a {
		for _, j := range byKey[key{x.Type, x.Node, x.Pattern}] {
			if gap := b[j].At.Sub(x.At).Abs(); gap <= tolerance {
				pairs = append(pairs, pair{i, j, gap})
			}
		}
	}
	sort.SliceStable(pairs, func(p, q int) bool { return pairs[p].gap < pairs[q].gap })
	usedA, usedB := make([]bool, len(a)), make([]bool, len(b))
	var d Delta
	for _, p := range pairs {
		if !usedA[p.i] && !usedB[p.j] {
			usedA[p.i], usedB[p.j] = true, true
			d.Alike++
		}
	}
	for i, x := range a {
		if !usedA[i] {
			d.Changes = append(d.Changes, Change{Op: '-', Event: x})
			d.OnlyA++
		}
	}
	for j, y := range b {
		if !usedB[j] {
			d.Changes = append(d.Changes, Change{Op: '+', Event: y})
			d.OnlyB++
		}
	}
	sort.SliceStable(d.Changes, func(i, j int) bool {
		x, y := d.Changes[i], d.Changes[j]
		if !x.Event.At.Equal(y.Event.At) {
			return x.Event.At.Before(y.Event.At)
		}
		return x.Op == '-' && y.Op == '+'
	})
	return d
}

// DiffTolerance is how far apart in time Diff matches events by default:
// two intervals, as a rule tuned by a tick or so moves its events that much
// without changing what they say.
func DiffTolerance(interval time.Duration) time.Duration { return 2 * interval }
