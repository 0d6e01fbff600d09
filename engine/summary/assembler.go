package summary

import (
	"fmt"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// Assembler collects chunks per member and hands out each Part once all
// its chunks have arrived, in any order. Only the newest Part of a member
// is collected: a chunk of a newer Seq drops the older incomplete one, and
// chunks of a Part not newer than the last completed (or the one being
// collected) are ignored. A lower Seq with a later At counts as newer: the
// member restarted and counts its ticks from the start again. It is not
// safe for concurrent use.
type Assembler struct {
	members map[string]*pending
}

type pending struct {
	seq     uint64
	at      time.Time
	count   uint32
	chunks  map[uint32]*chunk // nil when nothing is being collected
	done    bool              // doneSeq and doneAt are valid
	doneSeq uint64
	doneAt  time.Time
	touched time.Time // when its last chunk arrived
}

// NewAssembler returns an empty Assembler.
func NewAssembler() *Assembler {
	return &Assembler{members: make(map[string]*pending)}
}

// Add decodes one chunk. It returns the Part when data is the last missing
// chunk of its Seq; nil and no error when more chunks are due or the chunk
// is stale or a duplicate.
func (a *Assembler) Add(data []byte, received time.Time) (*Part, error) {
	c, err := decodeChunk(data)
	if err != nil {
		return nil, err
	}
	return a.add(c, received)
}

func (a *Assembler) add(c *chunk, received time.Time) (*Part, error) {
	m := a.members[c.member]
	if m == nil {
		m = &pending{}
		a.members[c.member] = m
	}
	m.touched = received
	if m.done && !newer(c, m.doneSeq, m.doneAt) {
		return nil, nil
	}
	if m.chunks != nil && c.seq == m.seq && !c.at.Equal(m.at) && !c.at.After(m.at) {
		return nil, nil
	}
	if m.chunks == nil || newer(c, m.seq, m.at) {
		m.seq, m.at, m.count, m.chunks = c.seq, c.at, c.count, make(map[uint32]*chunk)
	} else if c.seq != m.seq {
		return nil, nil
	}
	if c.count != m.count {
		return nil, fmt.Errorf("summary chunk %d/%d of member %q seq %d: earlier chunks of the seq say %d chunks", c.index+1, c.count, c.member, c.seq, m.count)
	}
	if _, dup := m.chunks[c.index]; dup {
		return nil, nil
	}
	m.chunks[c.index] = c
	if len(m.chunks) < int(m.count) {
		return nil, nil
	}
	p := assemble(m.chunks, m.count)
	m.chunks, m.done, m.doneSeq, m.doneAt = nil, true, m.seq, m.at
	return p, nil
}

// newer reports whether c belongs to a later Part than the one numbered
// seq taken at at: a higher Seq, or a later At with any other Seq (a
// restarted member numbers its ticks from the start again).
func newer(c *chunk, seq uint64, at time.Time) bool {
	if c.seq > seq {
		return true
	}
	return c.at.After(at)
}

// assemble joins a complete set of chunks in index order; the scalars come
// from the first.
func assemble(chunks map[uint32]*chunk, count uint32) *Part {
	first := chunks[0]
	if count == 1 {
		// One chunk: its lists are the Part's, copied no further.
		return &Part{
			Member: first.member, Seq: first.seq, At: first.at,
			Owned: first.owned, Nodes: first.nodes, Unobserved: first.unobserved,
		}
	}
	p := &Part{
		Member: first.member,
		Seq:    first.seq,
		At:     first.at,
	}
	var no, nn, nu int
	for _, c := range chunks {
		no += len(c.owned)
		nn += len(c.nodes)
		nu += len(c.unobserved)
	}
	if no > 0 {
		p.Owned = make([]string, 0, no)
	}
	if nn > 0 {
		p.Nodes = make([]snapshot.Node, 0, nn)
	}
	if nu > 0 {
		p.Unobserved = make([]snapshot.NodeKey, 0, nu)
	}
	for i := range count {
		c := chunks[i]
		p.Owned = append(p.Owned, c.owned...)
		p.Nodes = append(p.Nodes, c.nodes...)
		p.Unobserved = append(p.Unobserved, c.unobserved...)
	}
	return p
}

// Prune forgets members that sent nothing since before: their incomplete
// chunks and the Seq they last completed. A member that comes back is
// collected afresh.
func (a *Assembler) Prune(before time.Time) {
	for name, m := range a.members {
		if m.touched.Before(before) {
			delete(a.members, name)
		}
	}
}
