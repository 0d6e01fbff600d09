package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk/events"
)

// faultsOf returns the diagnostics of err, failing unless it is Errors.
func faultsOf(t *testing.T, err error) []string {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	out := make([]string, len(errs))
	for i, d := range errs {
		out[i] = d.Error()
	}
	return out
}

func sameLines(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics:\n  got  %s\n  want %s", strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
}

// TestBadFiles parses every file of testdata/bad. Each states the exact
// diagnostics it must produce in "# want: LINE:COL: MESSAGE" comments.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, f+":"+w)
				}
			}
			if len(want) == 0 {
				t.Fatal("file states no expected diagnostic")
			}
			rs, err := Parse(f, data, LoadOptions{})
			if rs != nil {
				t.Errorf("faulty file returned a ruleset")
			}
			sameLines(t, faultsOf(t, err), want)
		})
	}
}

func TestDefaultRuleset(t *testing.T) {
	rs, err := Parse(rulesets.DefaultName, rulesets.Default, LoadOptions{})
	if err != nil {
		t.Fatalf("built-in ruleset: %v", err)
	}
	if rs.Version != 1 || rs.Name != "default" || rs.File != rulesets.DefaultName {
		t.Errorf("ruleset = %d %q %q", rs.Version, rs.Name, rs.File)
	}
	want := map[string]struct {
		scope   Scope
		emit    string
		pattern string
	}{
		"system-overload": {ScopeSystem, events.TypeSystemDown, "overload"},
		"partition":       {ScopeGroup, events.TypeNodeDown, "partition"},
		"system-stalled":  {ScopeSystem, events.TypeSystemDown, "outage"},
		"flapping":        {ScopeNode, events.TypeNodeDown, "flapping"},
		"node-failure":    {ScopeNode, events.TypeNodeDown, "node-failure"},
		"bottleneck":      {ScopeNode, events.TypeNodeDown, "bottleneck"},
		"data-loss":       {ScopeNode, events.TypeNodeDown, "data-loss"},
		"retention-risk":  {ScopeNode, events.TypeNodeDown, "retention-risk"},
	}
	if len(rs.Rules) != len(want) {
		t.Fatalf("%d rules, want %d", len(rs.Rules), len(want))
	}
	for _, r := range rs.Rules {
		w, ok := want[r.Name]
		if !ok {
			t.Errorf("unexpected rule %q", r.Name)
			continue
		}
		if r.Scope != w.scope || r.Emit != w.emit || r.Pattern != w.pattern {
			t.Errorf("%s: scope %s emit %s pattern %s, want %v", r.Name, r.Scope, r.Emit, r.Pattern, w)
		}
		if r.when == nil || r.resolve == nil || len(r.Fingerprint) != 64 {
			t.Errorf("%s: not compiled (when %v, resolve %v, fingerprint %q)", r.Name, r.when != nil, r.resolve != nil, r.Fingerprint)
		}
	}
	if set, err := NewSet(rs); err != nil {
		t.Fatal(err)
	} else if got := ruleNames(set); !reflect.DeepEqual(got, []string{"system-overload", "data-loss", "partition", "system-stalled", "flapping", "node-failure", "retention-risk", "bottleneck"}) {
		t.Errorf("priority order %v", got)
	}
}

func ruleNames(s *Set) []string {
	var out []string
	for _, r := range s.Rules {
		out = append(out, r.Name)
	}
	return out
}

func TestParseFields(t *testing.T) {
	src := `version: 1
name: full
description: every field
vars:
  lag: 10
  share: 0.5
  who: "orders"
  on: true
rules:
  - name: grp.rule_1
    description: a group rule
    scope: group
    when: group.stalledFraction >= vars.share && vars.on
    resolve: group.stalledFraction < vars.share / 2
    for: 3s
    keepFiringFor: 1m30s
    cooldown: 0
    emit: system.down
    pattern: cut-off-2
    level: critical
    priority: -5
    actions:
      - plugin: alerting
        with:
          url: "${env:HOOK}"
          retries: 3
          ratio: 0.25
          loud: false
          nothing: null
          headers: {X-Token: "${file:/run/token}"}
          list: [1, "two", [3]]
        timeout: 10s
        optional: true
      - plugin: backpressure
  - name: n
    when: node.id == vars.who && node.messagesWaiting > vars.lag
    pattern: n
`
	rs, err := Parse("full.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs.Vars, map[string]any{"lag": 10, "share": 0.5, "who": "orders", "on": true}) {
		t.Errorf("vars = %#v", rs.Vars)
	}
	r := rs.Rules[0]
	if r.Name != "grp.rule_1" || r.Scope != ScopeGroup || r.Emit != events.TypeSystemDown || r.Pattern != "cut-off-2" ||
		r.Level != events.LevelCritical || r.Priority != -5 || r.For != 3*time.Second ||
		r.KeepFiringFor != 90*time.Second || r.Cooldown != 0 {
		t.Errorf("rule = %+v", r)
	}
	if r.When != "group.stalledFraction >= vars.share && vars.on" || r.Resolve != "group.stalledFraction < vars.share / 2" {
		t.Errorf("sources kept as written: %q %q", r.When, r.Resolve)
	}
	if r.Pos != (Position{"full.yaml", 10, 5}) {
		t.Errorf("rule pos = %v", r.Pos)
	}
	if len(r.Actions) != 2 {
		t.Fatalf("actions = %+v", r.Actions)
	}
	a := r.Actions[0]
	wantWith := map[string]any{
		"url": "${env:HOOK}", "retries": 3, "ratio": 0.25, "loud": false, "nothing": nil,
		"headers": map[string]any{"X-Token": "${file:/run/token}"},
		"list":    []any{1, "two", []any{3}},
	}
	if a.Plugin != "alerting" || a.Timeout != 10*time.Second || !a.Optional || !reflect.DeepEqual(a.With, wantWith) {
		t.Errorf("action = %#v", a)
	}
	if a.Pos != (Position{"full.yaml", 23, 9}) {
		t.Errorf("action pos = %v", a.Pos)
	}
	b := r.Actions[1]
	if b.Plugin != "backpressure" || b.With != nil || b.Timeout != 0 || b.Optional || b.Pos != (Position{"full.yaml", 34, 9}) {
		t.Errorf("second action = %#v", b)
	}
	n := rs.Rules[1]
	if n.Scope != ScopeNode || n.Emit != events.TypeNodeDown || n.Level != events.LevelWarning || n.Priority != 0 || n.resolve != nil {
		t.Errorf("defaults: %+v", n)
	}
	if rs2, err := Parse("sys.yaml", []byte("version: 1\nname: s\nrules:\n  - name: s\n    scope: system\n    when: system.nodes > 0\n    pattern: s\n"), LoadOptions{}); err != nil {
		t.Fatal(err)
	} else if rs2.Rules[0].Emit != events.TypeSystemDown {
		t.Errorf("system rule emits %s by default", rs2.Rules[0].Emit)
	}
}

// catalog is an in-memory PluginCatalog.
type catalog map[string][]string

func (c catalog) Params(name string) ([]string, bool) {
	p, ok := c[name]
	return p, ok
}

func TestPlugins(t *testing.T) {
	plugins := catalog{"alerting": {"url", "format", "headers"}, "anything": nil}
	rule := func(name string, actions string) string {
		return "  - name: " + name + "\n    when: node.stalled\n    pattern: p\n    actions:\n" + actions
	}
	head := "version: 1\nname: p\nrules:\n"

	t.Run("missing", func(t *testing.T) {
		src := head + rule("a", "      - plugin: pagerduty\n")
		_, err := Parse("p.yaml", []byte(src), LoadOptions{Plugins: plugins})
		sameLines(t, faultsOf(t, err), []string{`p.yaml:8:17: plugin "pagerduty" is not installed`})
	})
	t.Run("unknown parameter", func(t *testing.T) {
		src := head + rule("a", "      - plugin: alerting\n        with: {url: x, urll: y}\n      - plugin: anything\n        with: {whatever: 1}\n")
		_, err := Parse("p.yaml", []byte(src), LoadOptions{Plugins: plugins})
		sameLines(t, faultsOf(t, err), []string{`p.yaml:9:24: plugin "alerting" has no parameter "urll" (it takes url, format, headers)`})
	})
	t.Run("no catalog checks nothing", func(t *testing.T) {
		src := head + rule("a", "      - plugin: pagerduty\n        with: {any: 1}\n")
		if _, err := Parse("p.yaml", []byte(src), LoadOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("optional warns once per load", func(t *testing.T) {
		dir := t.TempDir()
		opt := "      - plugin: pagerduty\n        optional: true\n"
		write(t, dir, "a.yaml", head+rule("a1", opt)+rule("a2", opt))
		write(t, dir, "b.yaml", "version: 1\nname: b\nrules:\n"+rule("b1", opt+"      - plugin: sms\n        optional: true\n"))
		var warns []string
		opts := LoadOptions{Plugins: plugins, Warn: func(d Diagnostic) { warns = append(warns, d.Error()) }}
		set, err := LoadPaths([]string{dir}, opts)
		if err != nil {
			t.Fatal(err)
		}
		sameLines(t, warns, []string{
			filepath.Join(dir, "a.yaml") + `:8:17: plugin "pagerduty" is not installed; optional action skipped`,
			filepath.Join(dir, "b.yaml") + `:10:17: plugin "sms" is not installed; optional action skipped`,
		})
		if got := len(set.Rules[0].Actions); got != 1 {
			t.Errorf("the optional action is kept for the dispatcher to skip: %d actions", got)
		}
		warns = nil
		if _, err := LoadPaths([]string{dir}, opts); err != nil {
			t.Fatal(err)
		}
		if len(warns) != 2 {
			t.Errorf("a second load warns again: %v", warns)
		}
	})
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func oneRule(name string, priority string) string {
	return "version: 1\nname: " + name + "\nrules:\n  - name: " + name + "\n    when: node.stalled\n    pattern: p\n    priority: " + priority + "\n"
}

func TestLoadPathsFolder(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "b.yml", oneRule("b", "1"))
	write(t, dir, "a.yaml", oneRule("a", "1")+"  - name: a2\n    when: node.lagging\n    pattern: p\n    priority: 5\n")
	write(t, dir, "c.yaml", oneRule("c", "1"))
	// Skipped: hidden, editor leftovers, other extensions, subfolders.
	for _, name := range []string{".hidden.yaml", "#a.yaml#", "a.yaml~", ".a.yaml.swp", "a.yaml.swp", "a.yaml.tmp", "notes.txt", "README.md"} {
		write(t, dir, name, "not: [valid")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "sub.yaml"), "x.yaml", "not: [valid")
	extra := write(t, t.TempDir(), "extra.yaml", oneRule("z", "1"))

	set, err := LoadPaths([]string{dir, extra, filepath.Join(dir, "a.yaml")}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml"), filepath.Join(dir, "c.yaml"), extra}
	if !reflect.DeepEqual(set.Files, wantFiles) {
		t.Errorf("files = %v, want %v", set.Files, wantFiles)
	}
	// Priority first, then file order and position.
	if got := ruleNames(set); !reflect.DeepEqual(got, []string{"a2", "a", "b", "c", "z"}) {
		t.Errorf("rules = %v", got)
	}
}

func TestLoadPathsErrors(t *testing.T) {
	empty := t.TempDir()
	write(t, empty, ".only-hidden.yaml", oneRule("x", "1"))
	noRules := write(t, t.TempDir(), "none.yaml", "version: 1\nname: none\nrules: []\n")
	dupDir := t.TempDir()
	a := write(t, dupDir, "a.yaml", oneRule("same", "1"))
	b := write(t, dupDir, "b.yaml", "version: 1\nname: b\nrules:\n  - name: other\n    when: node.stalled\n    pattern: p\n  - name: same\n    when: node.lagging\n    pattern: p\n")
	badDir := t.TempDir()
	bad1 := write(t, badDir, "1.yaml", "version: 2\nname: x\nrules: []\n")
	bad2 := write(t, badDir, "2.yaml", "version: 1\nname: y\nrules:\n  - name: r\n    when: node.nope\n    pattern: p\n")

	for _, tc := range []struct {
		name  string
		paths []string
		want  []string
	}{
		{"empty folder", []string{empty}, []string{empty + ": no ruleset files (*.yaml or *.yml) in folder"}},
		{"no rules", []string{noRules}, []string{noRules + ": no rules"}},
		{"duplicate across files", []string{dupDir}, []string{b + `:7:11: duplicate rule name "same" (first defined at ` + a + ":4:11)"}},
		{"faults of every file", []string{badDir}, []string{
			bad1 + ":1:10: unsupported version 2 (want 1)",
			bad2 + ":5:16: when: unknown metric node.nope",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := LoadPaths(tc.paths, LoadOptions{})
			if set != nil {
				t.Error("returned a set")
			}
			sameLines(t, faultsOf(t, err), tc.want)
		})
	}

	if _, err := LoadPaths([]string{filepath.Join(empty, "missing.yaml")}, LoadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
	if _, err := LoadFile(filepath.Join(empty, "missing.yaml"), LoadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadPaths(nil, LoadOptions{}); err == nil {
		t.Error("no paths: no error")
	}
}

func TestLoadFile(t *testing.T) {
	p := write(t, t.TempDir(), "one.yaml", oneRule("one", "2"))
	rs, err := LoadFile(p, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rs.File != p || rs.Rules[0].Pos != (Position{p, 4, 5}) {
		t.Errorf("file %q, pos %v", rs.File, rs.Rules[0].Pos)
	}
}

func TestNewSetDuplicate(t *testing.T) {
	parse := func(file, src string) *Ruleset {
		rs, err := Parse(file, []byte(src), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	x := parse("x.yaml", oneRule("r", "1"))
	y := parse("y.yaml", oneRule("r", "3"))
	_, err := NewSet(x, y)
	sameLines(t, faultsOf(t, err), []string{`y.yaml:4:11: duplicate rule name "r" (first defined at x.yaml:4:11)`})
	set, err := NewSet(x)
	if err != nil || len(set.Rules) != 1 || !reflect.DeepEqual(set.Files, []string{"x.yaml"}) {
		t.Errorf("single set: %v %+v", err, set)
	}
}

// TestYAMLFaults covers faults of YAML shape rather than of rule fields.
func TestYAMLFaults(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"empty", "", []string{"f.yaml:1:1: empty file (want a ruleset with version, name and rules)"}},
		{"comments only", "# nothing\n", []string{"f.yaml:1:1: empty file (want a ruleset with version, name and rules)"}},
		{"first-line syntax", "a: b: c\n", []string{"f.yaml:1:1: yaml: mapping values are not allowed in this context"}},
		{"tab", "version: 1\n\tname: x\n", []string{"f.yaml:2:1: yaml: found a tab character that violates indentation"}},
		// yaml.v3 names the line where the enclosing block began (0-based);
		// the diagnostic names the line at fault.
		{"misindented field", "version: 1\nname: t\nrules:\n  - name: a\n    when: node.stalled\n    pattern: p\n  - name: b\n    when: node.stalled\n    pattern: p\n   priority: 3\n",
			[]string{"f.yaml:10:1: yaml: did not find expected '-' indicator"}},
		{"key without value", "version: 1\nname: t\nrules:\n  - name: a\n    when: node.stalled\n    pattern: p\n    bad key here\n    for: 1s\n",
			[]string{"f.yaml:7:1: yaml: could not find expected ':'"}},
		{"unclosed flow mapping", "version: 1\nname: t\nrules:\n  - name: a\n    when: node.stalled\n    pattern: p\n    actions:\n      - {plugin: x, with: {a: 1}\n  - name: b\n    when: x\n    pattern: p\n",
			[]string{"f.yaml:8:1: yaml: did not find expected ',' or '}'"}},
		{"unclosed quote", "version: 1\nname: t\nrules:\n  - name: a\n    when: \"node.stalled\n    pattern: p\n",
			[]string{"f.yaml:5:1: yaml: found unexpected end of stream"}},
		{"not a mapping", "- a\n- b\n", []string{"f.yaml:1:1: ruleset must be a mapping, got a list"}},
		{"two documents", "version: 1\nname: x\nrules: []\n---\nversion: 1\n", []string{"f.yaml:5:1: a ruleset file holds one YAML document, found a second"}},
		{"rules not a list", "version: 1\nname: x\nrules: {a: 1}\n", []string{"f.yaml:3:8: rules must be a list, got a mapping"}},
		{"rule not a mapping", "version: 1\nname: x\nrules:\n  - just text\n", []string{`f.yaml:4:5: rule must be a mapping, got "just text"`}},
		{"duplicate field", "version: 1\nname: x\nrules:\n  - name: a\n    when: node.stalled\n    pattern: a\n    when: node.lagging\n", []string{`f.yaml:7:5: duplicate field "when" in rule`}},
		{"bad var", "version: 1\nname: x\nvars:\n  1x: 1\n  ok: [1]\n  ok: 2\nrules: []\n", []string{
			`f.yaml:4:3: invalid var name "1x" (want a letter or _, then letters, digits or _)`,
			`f.yaml:5:7: var "ok" must be a number, string or boolean, got a list`,
		}},
		{"duplicate var", "version: 1\nname: x\nvars:\n  a: 1\n  a: 2\nrules: []\n", []string{`f.yaml:5:3: duplicate var "a"`}},
		{"wrong types", "version: 1\nname: [x]\nrules:\n  - name: a\n    when: [node.stalled]\n    pattern: a\n    actions:\n      - plugin: p\n        optional: yes\n        with: [1]\n", []string{
			"f.yaml:2:7: name must be a string, got a list",
			"f.yaml:5:11: when must be an expression, got a list",
			`f.yaml:9:19: optional must be true or false, got "yes"`,
			"f.yaml:10:15: with must be a mapping, got a list",
		}},
		{"missing plugin", "version: 1\nname: x\nrules:\n  - name: a\n    when: node.stalled\n    pattern: a\n    actions:\n      - with: {a: 1}\n      - plugin: ../bin/sh\n", []string{
			`f.yaml:8:9: missing field "plugin" in action`,
			`f.yaml:9:17: invalid plugin name "../bin/sh" (want lowercase letters, digits, - and _)`,
		}},
		{"merge key", "version: 1\nname: x\nrules:\n  - &r\n    name: a\n    when: node.stalled\n    pattern: a\n  - <<: *r\n    name: b\n", []string{
			`f.yaml:8:5: merge keys (<<) are not supported in rule`,
			`f.yaml:8:5: missing field "when" in rule "b"`,
			`f.yaml:8:5: missing field "pattern" in rule "b"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.src), LoadOptions{})
			sameLines(t, faultsOf(t, err), tc.want)
		})
	}
}

// TestAliasBomb nests aliases so that expanding them fully would visit 10^9
// nodes: the load fails at once with one diagnostic.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nname: bomb\nrules:\n  - name: a\n    when: node.stalled\n    pattern: a\n    actions:\n      - plugin: p\n        with:\n")
	b.WriteString("          a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "          a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("  - name: b\n    when: node.lagging\n    pattern: b\n    actions:\n      - plugin: p\n        with: {x: *a9}\n")
	_, err := Parse("f.yaml", []byte(b.String()), LoadOptions{})
	got := faultsOf(t, err)
	if len(got) != 1 || !strings.Contains(got[0], ": yaml: too many nodes through aliases (limit 100000)") {
		t.Errorf("diagnostics: %v", got)
	}
}

func TestAliasesShareActions(t *testing.T) {
	src := `version: 1
name: aliases
rules:
  - name: a
    when: node.stalled
    pattern: a
    actions: &notify
      - plugin: alerting
        with: {url: "${env:HOOK}"}
  - name: b
    when: node.lagging
    pattern: b
    actions: *notify
`
	rs, err := Parse("al.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs.Rules[0].Actions, rs.Rules[1].Actions) || len(rs.Rules[1].Actions) != 1 {
		t.Errorf("aliased actions differ: %+v vs %+v", rs.Rules[0].Actions, rs.Rules[1].Actions)
	}
}
