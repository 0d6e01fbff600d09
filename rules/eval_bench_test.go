package rules

import (
	"fmt"
	"testing"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/rulesets"
)

// BenchmarkEvalDefault10k is one tick of the built-in ruleset over 10,000
// nodes in 100 groups, a few of them in trouble so alerts are pending and
// firing as in real life. It reports node-rule evaluations per second.
func BenchmarkEvalDefault10k(b *testing.B) {
	rs, err := Parse(rulesets.DefaultName, rulesets.Default, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	set, err := NewSet(rs)
	if err != nil {
		b.Fatal(err)
	}
	const nodes, groups = 10000, 100
	st := &snapshot.State{}
	for i := 0; i < nodes; i++ {
		n := snapshot.Node{
			Key:     snapshot.NodeKey{Stream: fmt.Sprintf("S%02d", i%10), Consumer: fmt.Sprintf("c%05d", i)},
			ID:      fmt.Sprintf("c%05d", i),
			Group:   fmt.Sprintf("g%03d", i%groups),
			AckRate: 20, DeliveryRate: 20, ArrivalRate: 20, MessagesWaiting: 3, ArrivalRise: 1,
		}
		if i%500 == 0 { // 20 failed nodes
			n.Stalled, n.MessagesWaiting, n.LagGrowthRate, n.AckRate = true, 400, 20, 0
		}
		if i%700 == 1 { // 15 bottlenecks
			n.MessagesWaiting, n.LagGrowthRate, n.Lagging, n.FallingBehind, n.LagFloor = 300, 5, true, true, 290
		}
		n.Stream, n.Consumer = n.Key.Stream, n.Key.Consumer
		st.Nodes = append(st.Nodes, n)
	}
	for g := 0; g < groups; g++ {
		st.Groups = append(st.Groups, snapshot.Group{Name: fmt.Sprintf("g%03d", g), Size: nodes / groups, Judged: nodes / groups,
			OutsideNodes: nodes - nodes/groups, OutsideJudged: nodes - nodes/groups, OutsideFlowing: nodes - nodes/groups - 20})
	}
	st.System = snapshot.System{Nodes: nodes, JudgedNodes: nodes, Groups: groups, StalledNodes: 20, LaggingNodes: 15, FallingBehindNodes: 15,
		PublishRate: 2000, PublishRateBaseline: 2000, ArrivalRise: 1}

	nodeRules, others := 0, 0
	for _, r := range set.Rules {
		if r.Scope == ScopeNode {
			nodeRules++
		} else {
			others++
		}
	}
	e := NewEvaluator(set)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Second)
		e.Eval(now, st)
	}
	perTick := float64(nodes*nodeRules + groups + others)
	b.ReportMetric(perTick*float64(b.N)/b.Elapsed().Seconds(), "evals/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perTick, "ns/eval")
}
