package ruletest

import (
	"fmt"
	"slices"
)

// fits reports whether e matches x in every field x gives, the incident
// label aside: labels are matched across the whole test.
func fits(x *Expectation, e *Event) bool {
	switch {
	case x.Type != e.Type,
		e.At < x.From || e.At > x.To,
		x.Node != "" && x.Node != e.Node,
		x.Pattern != "" && x.Pattern != e.Pattern,
		x.Rule != "" && x.Rule != e.Rule,
		x.Level != "" && x.Level != e.Level,
		x.Group != "" && x.Group != e.Group,
		x.HasNodes && !slices.Equal(x.Nodes, e.Nodes),
		x.HasReason && x.Reason != e.Reason:
		return false
	}
	return true
}

// searchBudget bounds the matching search. Tests are small, and
// windows rarely let one event fit many expectations, so the search ends
// long before; the bound only keeps a pathological file from hanging.
const searchBudget = 200_000

// matcher looks for the assignment of events to expectations that matches
// the most events, each expectation used once, incident labels one-to-one
// with incidents.
type matcher struct {
	exps []*Expectation
	evs  []Event
	cand [][]int // per event, the expectations it fits

	used   []bool
	assign []int // per event, its expectation or -1
	label  map[string]string
	inc    map[string]string
	n      int // events matched in assign

	best   []int
	bestN  int
	budget int
}

// match pairs events with expectations and returns the expectations left
// unmatched, the events left unmatched, and notes on near misses.
func match(exps []*Expectation, evs []Event) (missing []*Expectation, unexpected []Event, hints []string) {
	m := &matcher{
		exps: exps, evs: evs,
		cand:   make([][]int, len(evs)),
		used:   make([]bool, len(exps)),
		assign: make([]int, len(evs)),
		label:  map[string]string{},
		inc:    map[string]string{},
		best:   make([]int, len(evs)),
		bestN:  -1,
		budget: searchBudget,
	}
	for i := range evs {
		m.assign[i] = -1
		for j, x := range exps {
			if fits(x, &evs[i]) {
				m.cand[i] = append(m.cand[i], j)
			}
		}
	}
	m.search(0)

	matched := make([]bool, len(exps))
	for i, j := range m.best {
		if j < 0 {
			unexpected = append(unexpected, evs[i])
			continue
		}
		matched[j] = true
	}
	for j, x := range exps {
		if !matched[j] {
			missing = append(missing, x)
		}
	}
	// An event that fits a missing expectation in every field was kept
	// apart by incident labels alone: say so, or the diff looks absurd.
	for i, j := range m.best {
		if j >= 0 {
			continue
		}
		for _, c := range m.cand[i] {
			if !matched[c] && exps[c].Incident != "" {
				hints = append(hints, fmt.Sprintf("the event at %s (incident %s) fits %s but for its incident label %q: one label is one incident, and one incident one label",
					evs[i].At, evs[i].Incident, exps[c].Pos, exps[c].Incident))
				break
			}
		}
	}
	return missing, unexpected, hints
}

// search tries every assignment from event i on, depth first, keeping the
// best; a branch that cannot beat the best is cut.
func (m *matcher) search(i int) bool {
	if m.n > m.bestN {
		m.bestN = m.n
		copy(m.best, m.assign)
	}
	if m.bestN == len(m.evs) || m.bestN == len(m.exps) {
		return true // nothing can do better
	}
	if i == len(m.evs) || m.budget <= 0 {
		return false
	}
	m.budget--
	if m.n+len(m.evs)-i <= m.bestN {
		return false
	}
	e := &m.evs[i]
	for _, j := range m.cand[i] {
		if m.used[j] {
			continue
		}
		lbl := m.exps[j].Incident
		bound := false
		if lbl != "" {
			id, labelled := m.label[lbl]
			other, named := m.inc[e.Incident]
			switch {
			case labelled && id != e.Incident, named && other != lbl:
				continue
			case !labelled:
				m.label[lbl], m.inc[e.Incident] = e.Incident, lbl
				bound = true
			}
		}
		m.used[j], m.assign[i] = true, j
		m.n++
		done := m.search(i + 1)
		m.n--
		m.used[j], m.assign[i] = false, -1
		if bound {
			delete(m.label, lbl)
			delete(m.inc, e.Incident)
		}
		if done {
			return true
		}
	}
	// This event left unmatched.
	return m.search(i + 1)
}
