package main

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/happen-dev/happen/plugins/internal/nodeset"
)

// sentSet remembers which alerts were delivered, so a retried action or the
// sibling events of one incident do not alert twice. It is bounded in size
// and age because the plugin runs as long as the engine. Keys being sent
// right now are held: a second sender waits for the first and then sees
// whether it succeeded.
type sentSet struct {
	mu       sync.Mutex
	max      int
	ttl      time.Duration
	now      func() time.Time
	order    *list.List // of *sentEntry, most recent first
	sent     map[string]*list.Element
	inflight map[string]chan struct{}
}

type sentEntry struct {
	key string
	at  time.Time
}

func newSentSet(max int, ttl time.Duration, now func() time.Time) *sentSet {
	return &sentSet{
		max: max, ttl: ttl, now: now,
		order:    list.New(),
		sent:     map[string]*list.Element{},
		inflight: map[string]chan struct{}{},
	}
}

// claim waits until none of keys is being sent, then returns those not yet
// sent, now held by the caller, who must pass them to release.
func (s *sentSet) claim(ctx context.Context, keys []string) ([]string, error) {
	for {
		s.mu.Lock()
		var wait chan struct{}
		for _, k := range keys {
			if ch, ok := s.inflight[k]; ok {
				wait = ch
				break
			}
		}
		if wait == nil {
			var claimed []string
			ch := make(chan struct{})
			for _, k := range keys {
				if !s.isSent(k) {
					claimed = append(claimed, k)
					s.inflight[k] = ch
				}
			}
			s.mu.Unlock()
			return claimed, nil
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// release lets go of claimed keys, recording them as sent when delivered.
func (s *sentSet) release(claimed []string, delivered bool) {
	if len(claimed) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.inflight[claimed[0]]
	for _, k := range claimed {
		delete(s.inflight, k)
		if delivered {
			s.add(k)
		}
	}
	if ch != nil {
		close(ch)
	}
}

// isSent reports whether k was delivered within the ttl. Caller holds mu.
func (s *sentSet) isSent(k string) bool {
	e, ok := s.sent[k]
	if !ok {
		return false
	}
	if s.now().Sub(e.Value.(*sentEntry).at) > s.ttl {
		s.order.Remove(e)
		delete(s.sent, k)
		return false
	}
	return true
}

// add records k as sent, evicting the oldest entries beyond max. Caller
// holds mu.
func (s *sentSet) add(k string) {
	now := s.now()
	if e, ok := s.sent[k]; ok {
		e.Value.(*sentEntry).at = now
		s.order.MoveToFront(e)
		return
	}
	s.sent[k] = s.order.PushFront(&sentEntry{key: k, at: now})
	for s.order.Len() > s.max {
		last := s.order.Back()
		s.order.Remove(last)
		delete(s.sent, last.Value.(*sentEntry).key)
	}
}

// len is the number of remembered keys, for tests.
func (s *sentSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// openSet follows the group incidents sent to each destination: which of
// their nodes are still down. A group incident (a partition) can end node by
// node, a node whose consumer was deleted or that a higher-priority rule
// took over ending alone, and its resolve is due once, when its last node
// is up. Like sentSet it lives in memory, bounded in size and age.
type openSet struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	now func() time.Time
	m   map[string]*openIncident
}

type openIncident struct {
	nodes []string // every node of the incident, sorted
	up    []string // those whose node.up came, sorted
	at    time.Time
}

func newOpenSet(max int, ttl time.Duration, now func() time.Time) *openSet {
	return &openSet{max: max, ttl: ttl, now: now, m: map[string]*openIncident{}}
}

// down records the nodes of a node.down of incident key.
func (o *openSet) down(key string, nodes []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	inc := o.get(key)
	if inc == nil {
		inc = o.put(key)
	}
	inc.nodes = nodeset.Union(inc.nodes, nodes)
	inc.at = o.now()
}

// up records node of incident key as up. It reports whether the incident
// is over, and its nodes: every node it has had, or, while it goes on,
// those still down. An incident it does not know (the plugin restarted
// since it fired) is over at a node.up whose condition cleared, which ends
// a group as a whole; after any other node.up (left, superseded) it waits
// for the nodes of nodes not yet up.
func (o *openSet) up(key, node string, nodes []string, cleared bool) (over bool, which []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	inc := o.get(key)
	if inc == nil {
		if cleared {
			return true, nodes
		}
		inc = o.put(key)
	}
	inc.nodes = nodeset.Union(inc.nodes, nodes)
	inc.up = nodeset.Union(inc.up, []string{node})
	inc.at = o.now()
	down := nodeset.Without(inc.nodes, inc.up)
	if len(down) == 0 || node == "" {
		return true, nodeset.Union(inc.nodes, inc.up)
	}
	return false, down
}

// forget drops incident key once its resolve is out.
func (o *openSet) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, key)
}

// get returns the incident under key unless it is too old. Caller holds mu.
func (o *openSet) get(key string) *openIncident {
	inc, ok := o.m[key]
	if ok && o.now().Sub(inc.at) > o.ttl {
		delete(o.m, key)
		return nil
	}
	return inc
}

// put adds an empty incident under key, making room first. Caller holds mu.
func (o *openSet) put(key string) *openIncident {
	if len(o.m) >= o.max {
		now := o.now()
		var oldest string
		for k, inc := range o.m {
			if now.Sub(inc.at) > o.ttl {
				delete(o.m, k)
			} else if oldest == "" || inc.at.Before(o.m[oldest].at) {
				oldest = k
			}
		}
		if len(o.m) >= o.max {
			delete(o.m, oldest)
		}
	}
	inc := &openIncident{at: o.now()}
	o.m[key] = inc
	return inc
}
