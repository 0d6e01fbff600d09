package main

import (
	"container/list"
	"context"
	"sync"
	"time"
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
