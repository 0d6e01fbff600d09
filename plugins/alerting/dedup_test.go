package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSentSetBoundAndAge(t *testing.T) {
	now := time.Unix(0, 0)
	s := newSentSet(3, time.Minute, func() time.Time { return now })
	send := func(k string) {
		c, err := s.claim(context.Background(), []string{k})
		if err != nil || len(c) != 1 {
			t.Fatalf("claim %s: %v %v", k, c, err)
		}
		s.release(c, true)
	}
	sent := func(k string) bool {
		c, _ := s.claim(context.Background(), []string{k})
		s.release(c, false)
		return len(c) == 0
	}
	for _, k := range []string{"a", "b", "c"} {
		send(k)
	}
	if !sent("a") {
		t.Fatal("a forgotten within bound")
	}
	send("d") // evicts the oldest: a
	if sent("a") || !sent("b") || !sent("d") || s.len() != 3 {
		t.Fatalf("after eviction: a=%v b=%v d=%v len=%d", sent("a"), sent("b"), sent("d"), s.len())
	}
	now = now.Add(2 * time.Minute)
	if sent("b") || sent("d") {
		t.Fatal("entries outlived their ttl")
	}
}

func TestSentSetWaitsForInflight(t *testing.T) {
	s := newSentSet(10, time.Hour, time.Now)
	first, err := s.claim(context.Background(), []string{"k"})
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	// A second sender of the same key waits, and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.claim(ctx, []string{"k"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim of a held key: %v", err)
	}
	done := make(chan []string)
	go func() {
		c, _ := s.claim(context.Background(), []string{"k", "other"})
		done <- c
	}()
	s.release(first, true)
	select {
	case c := <-done:
		// k went out meanwhile; only other is left to send.
		if len(c) != 1 || c[0] != "other" {
			t.Fatalf("claimed %v", c)
		}
		s.release(c, false)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by release")
	}
}
