package rules

import (
	"testing"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/rulesets"
)

func defaultRule(tb testing.TB, name string) *Rule {
	tb.Helper()
	rs, err := Parse(rulesets.DefaultName, rulesets.Default, LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range rs.Rules {
		if r.Name == name {
			return r
		}
	}
	tb.Fatalf("no rule %q in the built-in ruleset", name)
	return nil
}

// BenchmarkRuleMatch runs the built-in bottleneck rule, the longest node
// rule, as the evaluator does: one reused VM, one env per node.
func BenchmarkRuleMatch(b *testing.B) {
	r := defaultRule(b, "bottleneck")
	node := snapshot.Node{
		ID: "orders-eu-1", Stream: "ORDERS", Consumer: "orders-eu-1", Group: "eu",
		MessagesWaiting: 1520, NumPending: 1400, AckPending: 120, Redelivered: 3,
		DeliveryRate: 41.5, AckRate: 40.2, ArrivalRate: 88.7, LagGrowthRate: 48.5, PublishRate: 260,
		AckRateBaseline: 80, ArrivalRateBaseline: 85, ArrivalRise: 88.8 / 85.1, SecondsSinceLastAck: 0.2,
		Lagging: true, FallingBehind: true, LagFloor: 1400, ObservedSeconds: 600,
	}
	group := snapshot.Group{Name: "eu", Size: 4, Lagging: 1, LaggingFraction: 0.25, MessagesWaiting: 1900, AckRate: 160, ArrivalRate: 210, OutsideNodes: 8}
	system := snapshot.System{Nodes: 12, JudgedNodes: 12, LaggingNodes: 1, LaggingFraction: 1.0 / 12, FallingBehindNodes: 1, FallingBehindFraction: 1.0 / 12,
		MessagesWaiting: 2400, PublishRate: 900, PublishRateBaseline: 880, AckRate: 700, ArrivalRise: 1, Groups: 3, Streams: 2}
	env := &NodeEnv{Node: &node, Group: &group, System: &system}
	var m vm.VM
	if ok, err := r.Match(&m, env); err != nil || !ok {
		b.Fatalf("the bottleneck rule should hold: %v %v", ok, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Match(&m, env); err != nil {
			b.Fatal(err)
		}
	}
}
