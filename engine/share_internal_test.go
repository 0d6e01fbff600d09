package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/summary"
)

func keys(ss ...string) []flow.NodeKey {
	var out []flow.NodeKey
	for i := 0; i < len(ss); i += 2 {
		out = append(out, flow.NodeKey{Stream: ss[i], Consumer: ss[i+1]})
	}
	return out
}

func nodesOf(ks []flow.NodeKey) []flow.Node {
	out := make([]flow.Node, len(ks))
	for i, k := range ks {
		out[i] = flow.Node{Key: k, Stream: k.Stream, Consumer: k.Consumer}
	}
	return out
}

func TestMergeParts(t *testing.T) {
	owners := map[string]string{"A": "a", "B": "b", "C": "c", "D": "b"}
	owner := func(s string) string { return owners[s] }
	listed := []string{"A", "B", "C", "D", "E"}
	for _, tc := range []struct {
		name       string
		parts      []*summary.Part
		known      []flow.NodeKey
		nodes      []flow.NodeKey
		unobserved []flow.NodeKey
		left       []flow.NodeKey
		unread     []string
	}{{
		name: "three members, merged in key order",
		parts: []*summary.Part{
			{Member: "a", Owned: []string{"A"}, Nodes: nodesOf(keys("A", "x", "A", "y"))},
			{Member: "b", Owned: []string{"B", "D"}, Nodes: nodesOf(keys("B", "a", "D", "z")), Unobserved: keys("B", "q")},
			{Member: "c", Owned: []string{"C"}, Nodes: nodesOf(keys("C", "m"))},
		},
		nodes:      keys("A", "x", "A", "y", "B", "a", "C", "m", "D", "z"),
		unobserved: keys("B", "q"),
		unread:     []string{"E"},
	}, {
		name: "a stream two members sampled: the owner's nodes",
		parts: []*summary.Part{
			{Member: "a", Owned: []string{"A", "C"}, Nodes: nodesOf(keys("A", "x", "C", "old"))},
			{Member: "c", Owned: []string{"C"}, Nodes: nodesOf(keys("C", "m"))},
		},
		nodes:  keys("A", "x", "C", "m"),
		unread: []string{"B", "D", "E"},
	}, {
		name: "a node gone from a covered stream has left; from an uncovered one it is unobserved; from an unlisted one it has left",
		parts: []*summary.Part{
			{Member: "a", Owned: []string{"A"}, Nodes: nodesOf(keys("A", "x"))},
		},
		known:      keys("A", "gone", "A", "x", "B", "waiting", "Z", "deleted"),
		nodes:      keys("A", "x"),
		unobserved: keys("B", "waiting"),
		left:       keys("A", "gone", "Z", "deleted"),
		unread:     []string{"B", "C", "D", "E"},
	}, {
		name: "a part out of order is sorted, not trusted",
		parts: []*summary.Part{
			{Member: "b", Owned: []string{"B"}, Nodes: nodesOf(keys("B", "z", "B", "a"))},
			{Member: "a", Owned: []string{"A"}, Nodes: nodesOf(keys("A", "x"))},
		},
		nodes:  keys("A", "x", "B", "a", "B", "z"),
		unread: []string{"C", "D", "E"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st, next, unread := mergeParts(time.Unix(0, 0), tc.parts, owner, listed, tc.known)
			var got []flow.NodeKey
			for _, n := range st.Nodes {
				got = append(got, n.Key)
			}
			if !slices.Equal(got, tc.nodes) || !slices.Equal(st.Unobserved, tc.unobserved) || !slices.Equal(st.Left, tc.left) {
				t.Fatalf("nodes %v, unobserved %v, left %v\nwant %v, %v, %v", got, st.Unobserved, st.Left, tc.nodes, tc.unobserved, tc.left)
			}
			if !slices.Equal(unread, tc.unread) {
				t.Fatalf("unread %v, want %v", unread, tc.unread)
			}
			want := slices.Concat(tc.nodes, tc.unobserved)
			slices.SortFunc(want, flow.CompareKeys)
			if !slices.Equal(next, want) {
				t.Fatalf("known next %v, want %v", next, want)
			}
		})
	}
}

// BenchmarkMergeParts30k is the leader's merge at 30,000 nodes: three
// summaries of 10,000 on 100 streams.
func BenchmarkMergeParts30k(b *testing.B) {
	var parts []*summary.Part
	owners := map[string]string{}
	var listed []string
	for m, member := range []string{"a", "b", "c"} {
		p := &summary.Part{Member: member}
		for s := m; s < 100; s += 3 {
			name := fmt.Sprintf("S%03d", s)
			owners[name] = member
			p.Owned = append(p.Owned, name)
			for c := range 300 {
				k := flow.NodeKey{Stream: name, Consumer: fmt.Sprintf("c%05d", c)}
				p.Nodes = append(p.Nodes, flow.Node{Key: k, Stream: k.Stream, Consumer: k.Consumer})
			}
		}
		parts = append(parts, p)
	}
	for name := range owners {
		listed = append(listed, name)
	}
	slices.Sort(listed)
	owner := func(s string) string { return owners[s] }
	var known []flow.NodeKey
	b.ReportAllocs()
	for b.Loop() {
		var st *flow.State
		st, known, _ = mergeParts(time.Unix(0, 0), parts, owner, listed, known)
		if len(st.Nodes) != 30000 {
			b.Fatalf("%d nodes", len(st.Nodes))
		}
	}
}
