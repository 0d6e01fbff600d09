package members_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/happen-dev/happen/engine/members"
)

// TestRendezvousFixed pins the hash: these owners were computed once (and
// checked against an independent FNV-1a 64 + splitmix64 implementation).
// Every engine of a deployment must agree on them, whatever its version,
// process or platform, so a change of hash must fail here.
func TestRendezvousFixed(t *testing.T) {
	for _, c := range []struct {
		stream  string
		members []string
		want    string
	}{
		{"ORDERS", []string{"a", "b", "c"}, "c"},
		{"PAYMENTS", []string{"a", "b", "c"}, "b"},
		{"EVENTS", []string{"a", "b", "c"}, "c"},
		{"ORDERS", []string{"engine-1", "engine-2"}, "engine-2"},
		{"KV_happen_lease", []string{"engine-1", "engine-2", "engine-3", "engine-4"}, "engine-4"},
		{"x", []string{"only"}, "only"},
		{"x", nil, ""},
	} {
		if got := members.Rendezvous(c.stream, c.members); got != c.want {
			t.Errorf("Rendezvous(%q, %q) = %q, want %q", c.stream, c.members, got, c.want)
		}
	}
}

func streams(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("stream-%d", i)
	}
	return s
}

func TestRendezvousBalance(t *testing.T) {
	all := streams(10000)
	ms := []string{"engine-a", "engine-b", "engine-c"}
	count := map[string]int{}
	for _, s := range all {
		count[members.Rendezvous(s, ms)]++
	}
	// With a uniform hash each share is binomial(10000, 1/3): its standard
	// deviation is 0.47%, so ±3% is more than six deviations.
	for _, m := range ms {
		share := float64(count[m]) / float64(len(all))
		t.Logf("%s: %d streams (%.2f%%)", m, count[m], 100*share)
		if share < 1.0/3-0.03 || share > 1.0/3+0.03 {
			t.Errorf("%s owns %.2f%% of the streams, want 33%%±3%%", m, 100*share)
		}
	}
}

func TestRendezvousMinimalMovement(t *testing.T) {
	all := streams(10000)
	four := []string{"m1", "m2", "m3", "m4"}
	before := map[string]string{}
	for _, s := range all {
		before[s] = members.Rendezvous(s, four)
	}

	// m3 leaves: only its streams move.
	three := []string{"m1", "m2", "m4"}
	moved := 0
	for _, s := range all {
		after := members.Rendezvous(s, three)
		if before[s] != "m3" && after != before[s] {
			t.Fatalf("%s moved from %s to %s when only m3 left", s, before[s], after)
		}
		if after != before[s] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("m3 owned nothing")
	}

	// m5 joins: a stream moves only to m5.
	five := append(slices.Clone(four), "m5")
	toNew := 0
	for _, s := range all {
		after := members.Rendezvous(s, five)
		if after != before[s] && after != "m5" {
			t.Fatalf("%s moved from %s to %s when m5 joined", s, before[s], after)
		}
		if after == "m5" {
			toNew++
		}
	}
	// The newcomer takes about a fifth, each old member giving up its part.
	if share := float64(toNew) / float64(len(all)); share < 0.2-0.03 || share > 0.2+0.03 {
		t.Errorf("m5 took %.2f%% of the streams, want about 20%%", 100*share)
	}
}

func TestRendezvousOrderIndependent(t *testing.T) {
	orders := [][]string{
		{"a", "b", "c", "d"},
		{"d", "c", "b", "a"},
		{"b", "d", "a", "c"},
		{"c", "a", "d", "b"},
	}
	for _, s := range streams(2000) {
		want := members.Rendezvous(s, orders[0])
		for _, o := range orders[1:] {
			if got := members.Rendezvous(s, o); got != want {
				t.Fatalf("Rendezvous(%q, %q) = %q, but %q with %q", s, o, got, want, orders[0])
			}
		}
	}
}
