package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules/snapshot"
)

// exprHead puts a rule's when on line 6.
const exprHead = "version: 1\nname: m\nrules:\n  - name: a\n    pattern: a\n"

// TestExprPositions checks that an expression fault points at the right
// line and column of the file whatever the scalar style.
func TestExprPositions(t *testing.T) {
	for _, tc := range []struct {
		name, when string
		want       string // line:col of "stalld"
	}{
		{"plain", "    when: node.ackRate > 0 && node.stalld\n", "6:36"},
		{"single quoted", "    when: 'node.id == ''x'' && node.stalld'\n", "6:37"},
		{"double quoted", "    when: \"node.id == \\\"x\\\" && node.stalld\"\n", "6:37"},
		{"double quoted tab escape", "    when: \"node.ackRate >\\t0 && node.stalld\"\n", "6:38"},
		{"double quoted hex escape", "    when: \"node.ackRate\\x20> 0 && node.stalld\"\n", "6:40"},
		{"unicode", "    when: node.id == \"é→\" && node.stalld\n", "6:35"},
		{"folded", "    when: >-\n      node.ackRate > 0\n      && node.stalld\n", "8:15"},
		{"folded keep", "    when: >+\n      node.ackRate > 0\n      && node.stalld\n\n", "8:15"},
		{"folded empty line", "    when: >\n      node.ackRate > 0\n\n      && node.stalld\n", "9:15"},
		{"folded more indented", "    when: >-\n      node.ackRate > 0\n        && node.stalld\n", "8:17"},
		{"folded comment after indicator", "    when: >- # why\n      node.ackRate > 0\n      && node.stalld\n", "8:15"},
		{"literal", "    when: |\n      node.ackRate > 0 &&\n        node.stalld\n", "8:14"},
		{"literal first line", "    when: |-\n      node.stalld\n", "7:12"},
		{"literal blank lines", "    when: |\n\n      node.ackRate > 0 &&\n\n\n      node.stalld\n", "11:12"},
		{"plain multi-line", "    when: node.ackRate > 0\n      && node.stalld\n", "7:15"},
		{"plain multi-line trailing spaces", "    when: node.ackRate > 0   \n         && node.stalld\n", "7:18"},
		{"double quoted multi-line", "    when: \"node.ackRate > 0\n      && node.stalld\"\n", "7:15"},
		{"double quoted escaped break", "    when: \"node.ackRate > 0 && node.\\\n      stalld\"\n", "7:7"},
		{"single quoted multi-line", "    when: 'node.ackRate > 0\n\n      && node.stalld'\n", "8:15"},
		{"byte order mark", "", "1:42"},
		{"crlf", "    when: node.ackRate > 0 &&\r\n      node.stalld\r\n", "7:12"},
		{"flow mapping", "    when: {x: 1}\n  - name: b\n    pattern: b\n    when: \"node.stalld\"\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := exprHead + tc.when
			if tc.name == "byte order mark" {
				src = "\ufeffrules: [{name: a, pattern: a, when: node.stalld}]\nversion: 1\nname: m\n"
			}
			_, err := Parse("m.yaml", []byte(src), LoadOptions{})
			got := faultsOf(t, err)
			if tc.want == "" {
				// Several faults, each at its own place.
				sameLines(t, got, []string{
					"m.yaml:6:11: when must be an expression, got a mapping",
					"m.yaml:9:17: when: unknown metric node.stalld",
				})
				return
			}
			sameLines(t, got, []string{"m.yaml:" + tc.want + ": when: unknown metric node.stalld"})
		})
	}
}

// TestExprFaultsAtEnd covers errors that point past the last token or at
// the whole expression.
func TestExprFaultsAtEnd(t *testing.T) {
	for _, tc := range []struct {
		name, when, want string
	}{
		{"dangling operator folded", "    when: >-\n      node.ackRate >\n", "m.yaml:7:20: when: unexpected token EOF"},
		{"unclosed paren", "    when: (node.stalled\n", "m.yaml:6:23: when: unexpected token EOF"},
		{"not bool", "    when: >-\n      node.ackRate\n", "m.yaml:6:11: when: expression must be boolean, not float64"},
		{"empty", "    when: ''\n", "m.yaml:6:11: when: expression is empty"},
		{"null", "    when:\n", "m.yaml:6:10: when is empty"},
		{"bad var type", "    when: node.id == vars.lag\n", "m.yaml:6:19: when: invalid operation: == (mismatched types string and int)"},
		{"vars alone", "    when: vars[1] > 0\n", "m.yaml:6:11: when: vars must be followed by a var name, as in vars.NAME"},
		{"unknown function", "    when: foo(node.ackRate)\n", "m.yaml:6:11: when: unknown name foo"},
		{"system rule reading group", "    scope: system\n    when: group.size > 0\n", "m.yaml:7:11: when: group is not available in a system rule (it sees system)"},
		{"resolve", "    when: node.stalled\n    resolve: node.acks > 0\n", "m.yaml:7:19: resolve: unknown metric node.acks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := exprHead + tc.when
			if strings.Contains(tc.when, "vars") {
				// when stays on line 6.
				src = "version: 1\nname: m\nvars: {lag: 10}\nrules:\n  - name: a\n" + tc.when + "    pattern: a\n"
			}
			_, err := Parse("m.yaml", []byte(src), LoadOptions{})
			sameLines(t, faultsOf(t, err), []string{tc.want})
		})
	}
}

func nodeEnv(n snapshot.Node, g snapshot.Group, s snapshot.System) *NodeEnv {
	return &NodeEnv{Node: &n, Group: &g, System: &s}
}

func TestVarsSubstituted(t *testing.T) {
	src := `version: 1
name: v
vars:
  lag: 10
  share: 0.5
  who: orders-1
  strict: true
rules:
  - name: a
    when: node.id == vars.who && node.messagesWaiting > vars.lag && group.stalledFraction < vars.share && vars.strict
    pattern: a
`
	rs, err := Parse("v.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rules[0]
	var m vm.VM
	for _, tc := range []struct {
		id      string
		waiting int
		frac    float64
		want    bool
	}{
		{"orders-1", 11, 0.25, true},
		{"orders-1", 10, 0.25, false},
		{"orders-2", 11, 0.25, false},
		{"orders-1", 11, 0.5, false},
	} {
		got, err := r.Match(&m, nodeEnv(snapshot.Node{ID: tc.id, MessagesWaiting: tc.waiting}, snapshot.Group{StalledFraction: tc.frac}, snapshot.System{}))
		if err != nil || got != tc.want {
			t.Errorf("%+v: got %v, %v", tc, got, err)
		}
	}
}

// TestHostileExpressions shows that expressions built to exhaust memory or
// time either fail to load or fail when run, with an error.
func TestHostileExpressions(t *testing.T) {
	long := strings.Repeat("x", 5000)
	manyNodes := strings.Repeat("1 + ", 600) + "1 > 0"
	deepParens := strings.Repeat("(", 2000) + "node.stalled" + strings.Repeat(")", 2000)
	deepNot := strings.Repeat("!", 1500) + "node.stalled"
	deepArray := strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + " == nil"
	var doubling strings.Builder
	doubling.WriteString("let s0 = node.id; ")
	for i := 1; i < 40; i++ {
		doubling.WriteString(fmt.Sprintf("let s%d = s%d + s%d; ", i, i-1, i-1))
	}
	doubling.WriteString("len(s39) > 0")

	for _, tc := range []struct {
		name, when, want string
	}{
		{"too long", `node.id == "` + long + `"`, "when: expression is too long (5013 bytes, limit 4096)"},
		{"too many nodes", manyNodes, "when: expression is too complex (more than 1000 nodes)"},
		{"deep negation", deepNot, "when: expression is too complex (more than 1000 nodes)"},
		{"deep arrays", deepArray, "when: expression is too complex (more than 1000 nodes)"},
		{"huge range filtered", "(1..1000000000 | filter(# > 0) | len()) > 0", "when: a range (a..b) is only allowed after in, as in x in 1..10"},
		{"filter", "([1, 2, 3] | filter(# > node.ackRate) | len()) > 0", "when: filter is not allowed in rules (rules may not loop)"},
		{"nested loops", "all([1, 2], all([1, 2], all([1, 2], true)))", "when: all is not allowed in rules (rules may not loop)"},
		{"reduce", "len(reduce([1, 2, 3], #acc + #acc, \"x\")) > 0", "when: reduce is not allowed in rules (rules may not loop)"},
		{"repeat", `len(repeat("xxxxxxxx", 1000000)) > 0`, "when: function repeat is not allowed in rules"},
		{"replace", `len(replace(node.id, "", node.id)) > 0`, "when: function replace is not allowed in rules"},
		{"base64 growth", `len(toBase64(toBase64(node.id))) > 0`, "when: function toBase64 is not allowed in rules"},
		{"clock", `now().Year() > 2000`, "when: function now is not allowed in rules"},
		{"let doubling", doubling.String(), "when: let is not allowed in rules (declare constants under vars)"},
		{"huge range", "len(1..1000000000) > 0", "when: a range (a..b) is only allowed after in, as in x in 1..10"},
		{"range piped", "(1..1000000000 | max()) > 0", "when: a range (a..b) is only allowed after in, as in x in 1..10"},
		{"computed pattern", `node.id matches ("[a-z]" + node.id)`, "when: matches needs a fixed pattern (a string or a string var), not a computed one"},
		{"huge pattern", `node.id matches "` + strings.Repeat("[a-z]{1000}", 3) + `"`, "when: pattern is too large (3002 instructions compiled, limit 2000)"},
		{"bad pattern", `node.id matches "(["`, "when: bad pattern: error parsing regexp: missing closing ]: `[`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(exprHead+"    when: '"+strings.ReplaceAll(tc.when, "'", "''")+"'\n"), LoadOptions{})
			got := faultsOf(t, err)
			if len(got) != 1 || !strings.HasSuffix(got[0], ": "+tc.want) {
				t.Errorf("diagnostics %v, want one ending %q", trim(got), tc.want)
			}
		})
	}

	t.Run("huge string var", func(t *testing.T) {
		src := "version: 1\nname: h\nvars:\n  big: " + strings.Repeat("y", 3000) + "\nrules:\n  - name: a\n    pattern: a\n    when: node.id == vars.big + vars.big\n"
		_, err := Parse("h.yaml", []byte(src), LoadOptions{})
		sameLines(t, faultsOf(t, err), []string{"h.yaml:8:11: when: expression is too long with its string vars substituted (6000 bytes, limit 4096)"})
	})

	// These load, and fail or finish when run: never a panic or a hang.
	var m vm.VM
	env := nodeEnv(snapshot.Node{ID: "orders-1", AckPending: 1e9}, snapshot.Group{}, snapshot.System{})
	for _, tc := range []struct {
		name, when string
		want       bool
		wantErr    string
	}{
		// x in a..b is a bounds test, whatever the bounds: no list is built.
		{"huge dynamic range", "node.numPending in 1..node.ackPending", false, ""},
		{"huge dynamic range, within", "node.numPending + 1 in 1..node.ackPending", true, ""},
		{"huge constant range", "node.numPending + 1 in 1..1000000000", true, ""},
		{"float in huge range", "node.ackRate in 1..1000000000", false, ""},
		{"float within a range", "node.ackRate + 1.5 in 1..2", true, ""},
		{"not in a range", "node.numPending not in 1..node.ackPending", true, ""},
		{"division by zero", "1 / node.numPending > 0", true, ""}, // float division: +Inf
		{"modulo by zero", "1 % node.numPending == 0", false, "integer divide by zero"},
		{"index out of range", "[1, 2][node.numPending + 5] > 0", false, "index out of range"},
		{"deep parentheses", deepParens, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse("h.yaml", []byte(exprHead+"    when: '"+tc.when+"'\n"), LoadOptions{})
			if err != nil {
				t.Fatalf("load: %v", trim(faultsOf(t, err)))
			}
			got, err := rs.Rules[0].Match(&m, env)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("run: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("run error %v, want %q", err, tc.wantErr)
			case got != tc.want:
				t.Errorf("got %v", got)
			}
		})
	}
}

func trim(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 200 {
			l = l[:200] + "..."
		}
		out[i] = l
	}
	return out
}

func TestFingerprint(t *testing.T) {
	base := `version: 1
name: f
description: about
vars:
  lag: 10
  unused: 1
rules:
  - name: a
    description: first
    scope: node
    when: system.messagesWaiting > vars.lag
    resolve: system.messagesWaiting < vars.lag
    for: 3s
    keepFiringFor: 2s
    cooldown: 1m
    emit: node.down
    pattern: a
    level: warning
    priority: 1
    actions:
      - plugin: alerting
        with: {url: "${env:A}", n: 1}
        timeout: 5s
        optional: false
`
	fp := func(t *testing.T, src string) string {
		t.Helper()
		rs, err := Parse("f.yaml", []byte(src), LoadOptions{})
		if err != nil {
			t.Fatalf("%v", err)
		}
		return rs.Rules[0].Fingerprint
	}
	want := fp(t, base)
	if again := fp(t, base); again != want {
		t.Fatalf("two loads differ: %s %s", want, again)
	}
	same := map[string][2]string{
		"rule description":   {"description: first", "description: second"},
		"ruleset name":       {"name: f\n", "name: g\n"},
		"unused var":         {"unused: 1", "unused: 2"},
		"default made plain": {"    scope: node\n", ""},
		"layout":             {"{url: \"${env:A}\", n: 1}", "\n          n: 1\n          url: \"${env:A}\""},
		"duration spelling":  {"cooldown: 1m", "cooldown: 60s"},
		"file position":      {"rules:\n", "rules:\n\n\n"},
	}
	for name, c := range same {
		t.Run("same "+name, func(t *testing.T) {
			src := strings.Replace(base, c[0], c[1], 1)
			if src == base {
				t.Fatal("no change made")
			}
			if got := fp(t, src); got != want {
				t.Errorf("fingerprint changed")
			}
		})
	}
	differ := map[string][2]string{
		"name":          {"  - name: a", "  - name: b"},
		"scope":         {"scope: node", "scope: group"},
		"when":          {"system.messagesWaiting > vars.lag", "system.messagesWaiting >= vars.lag"},
		"resolve":       {"resolve: system.messagesWaiting < vars.lag", "resolve: system.messagesWaiting < 5"},
		"no resolve":    {"    resolve: system.messagesWaiting < vars.lag\n", ""},
		"used var":      {"lag: 10", "lag: 11"},
		"var type":      {"lag: 10", "lag: 10.0"},
		"for":           {"for: 3s", "for: 4s"},
		"keepFiringFor": {"keepFiringFor: 2s", "keepFiringFor: 0s"},
		"cooldown":      {"cooldown: 1m", "cooldown: 2m"},
		"emit":          {"emit: node.down", "emit: system.down"},
		"pattern":       {"pattern: a", "pattern: b"},
		"level":         {"level: warning", "level: critical"},
		"priority":      {"priority: 1", "priority: 2"},
		"plugin":        {"plugin: alerting", "plugin: backpressure"},
		"with value":    {", n: 1}", ", n: 2}"},
		"with type":     {", n: 1}", ", n: \"1\"}"},
		"with key":      {", n: 1}", ", m: 1}"},
		"timeout":       {"timeout: 5s", "timeout: 6s"},
		"optional":      {"optional: false", "optional: true"},
		"no actions":    {"    actions:\n      - plugin: alerting\n        with: {url: \"${env:A}\", n: 1}\n        timeout: 5s\n        optional: false\n", ""},
	}
	for name, c := range differ {
		t.Run("differs "+name, func(t *testing.T) {
			src := strings.Replace(base, c[0], c[1], 1)
			if src == base {
				t.Fatal("no change made")
			}
			if got := fp(t, src); got == want {
				t.Errorf("fingerprint unchanged")
			}
		})
	}
}

// TestMatchDefault runs the built-in node-failure rule on a node that
// stopped and on one that flows.
func TestMatchDefault(t *testing.T) {
	r := defaultRule(t, "node-failure")
	var m vm.VM
	stalled := nodeEnv(
		snapshot.Node{ID: "orders-1", Stalled: true, LagGrowthRate: 12, ArrivalRate: 12, MessagesWaiting: 300},
		snapshot.Group{Name: "eu", Size: 3, Stalled: 1, StalledFraction: 1.0 / 3},
		snapshot.System{Nodes: 6, StalledNodes: 1},
	)
	if ok, err := r.Match(&m, stalled); err != nil || !ok {
		t.Errorf("stalled node: %v %v", ok, err)
	}
	if cleared, err := r.Cleared(&m, stalled, true); err != nil || cleared {
		t.Errorf("stalled node cleared: %v %v", cleared, err)
	}
	flowing := nodeEnv(snapshot.Node{ID: "orders-1", AckRate: 40, MessagesWaiting: 3}, snapshot.Group{Name: "eu", Size: 3}, snapshot.System{Nodes: 6})
	if ok, err := r.Match(&m, flowing); err != nil || ok {
		t.Errorf("flowing node: %v %v", ok, err)
	}
	if cleared, err := r.Cleared(&m, flowing, false); err != nil || !cleared {
		t.Errorf("flowing node not cleared: %v %v", cleared, err)
	}
}
