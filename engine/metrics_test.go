package engine

import (
	"strings"
	"testing"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Per-node series follow the node: updated each tick, relabelled when its
// metadata changes, removed when it leaves.
func TestNodeSeriesFollowNodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	key := flow.NodeKey{Stream: "S", Consumer: "c1"}
	node := flow.Node{Key: key, Stream: "S", Consumer: "c1", ID: "c1", Group: "eu", MessagesWaiting: 7}

	m.observe(&flow.State{Nodes: []flow.Node{node}})
	want := `
# HELP happen_node_messages_waiting Messages a node has not finished (pending + ack pending).
# TYPE happen_node_messages_waiting gauge
happen_node_messages_waiting{consumer="c1",group="eu",node="c1",stream="S"} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "happen_node_messages_waiting"); err != nil {
		t.Fatal(err)
	}

	node.Group, node.MessagesWaiting = "us", 9
	m.observe(&flow.State{Nodes: []flow.Node{node}})
	want = strings.Replace(strings.Replace(want, `group="eu"`, `group="us"`, 1), "} 7", "} 9", 1)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "happen_node_messages_waiting"); err != nil {
		t.Fatal(err)
	}

	m.observe(&flow.State{Left: []flow.NodeKey{key}})
	if n := testutil.CollectAndCount(m.perNode, "happen_node_messages_waiting"); n != 0 {
		t.Fatalf("%d series left for a node that left", n)
	}
}
