package rules_test

import (
	"errors"
	"fmt"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/snapshot"
)

// A faulty ruleset is refused with every fault at once, each at its place
// in the file, expression faults included.
func ExampleParse_faults() {
	src := `version: 1
name: example
rules:
  - name: slow-consumer
    scope: nod
    when: node.ackRate < 1
    pattern: bottleneck
  - name: stuck
    when: >-
      node.stalled
      && node.messagesWaitng > 0
    pattern: node-failure
    levle: critical
`
	_, err := rules.Parse("rules/example.yaml", []byte(src), rules.LoadOptions{})
	var faults rules.Errors
	if errors.As(err, &faults) {
		for _, d := range faults {
			fmt.Println(d)
		}
	}
	// Output:
	// rules/example.yaml:5:12: unknown scope "nod" (want node, group or system)
	// rules/example.yaml:11:15: when: unknown metric node.messagesWaitng
	// rules/example.yaml:13:5: unknown field "levle" in rule
}

// A loaded rule is matched against the metrics of one node.
func ExampleRule_Match() {
	src := `version: 1
name: example
vars:
  deep: 1000
rules:
  - name: deep-lag
    when: node.messagesWaiting > vars.deep && node.lagGrowthRate > 0
    pattern: bottleneck
`
	rs, err := rules.Parse("example.yaml", []byte(src), rules.LoadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var m vm.VM
	for _, waiting := range []int{400, 4000} {
		env := &rules.NodeEnv{
			Node:   &snapshot.Node{ID: "orders-1", MessagesWaiting: waiting, LagGrowthRate: 12.5},
			Group:  &snapshot.Group{},
			System: &snapshot.System{},
		}
		ok, err := rs.Rules[0].Match(&m, env)
		fmt.Println(waiting, ok, err)
	}
	// Output:
	// 400 false <nil>
	// 4000 true <nil>
}
