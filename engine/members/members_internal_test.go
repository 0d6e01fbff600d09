package members

import (
	"fmt"
	"testing"
)

func TestKeyEncoding(t *testing.T) {
	for _, c := range []struct {
		name, key string
	}{
		{"engine-1", "engine-1"},
		{"a.b_c/d=e", "a.b_c/d=e"},
		{"host 1:9466", "=686f737420313a39343636"},
		{"=x", "=3d78"}, // would read as an encoding: encoded itself
		{".a", "=2e61"},
		{"a..b", "=612e2e62"},
		{"Ω", "=cea9"},
		{"a*", "=612a"},
	} {
		k := keyFor(c.name)
		if k != c.key {
			t.Errorf("keyFor(%q) = %q, want %q", c.name, k, c.key)
		}
		if !validKey(k) {
			t.Errorf("keyFor(%q) = %q is no valid KV key", c.name, k)
		}
		if n, ok := nameOf(k); !ok || n != c.name {
			t.Errorf("nameOf(%q) = %q, %v; want %q", k, n, ok, c.name)
		}
	}
	if _, ok := nameOf("=zz"); ok {
		t.Error("nameOf accepted a key that is no encoding")
	}
}

// TestViewMatchesRendezvous checks Owns' precomputed seeds against the
// pure function.
func TestViewMatchesRendezvous(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	v := newView(names, "c")
	for i := range 5000 {
		s := fmt.Sprintf("s%d", i)
		if got, want := v.names[v.pick(s)], Rendezvous(s, names); got != want {
			t.Fatalf("view picks %q for %q, Rendezvous %q", got, s, want)
		}
	}
}

func BenchmarkOwns(b *testing.B) {
	m := New(nil, Config{Identity: "engine-b"})
	v := newView([]string{"engine-a", "engine-b", "engine-c"}, "engine-b")
	v.ready = true
	m.v.Store(v)
	streams := make([]string, 1024)
	for i := range streams {
		streams[i] = fmt.Sprintf("ORDERS_%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		if m.Owns(streams[i%len(streams)]) {
			n++
		}
	}
	if n == 0 {
		b.Fatal("owns nothing")
	}
}
