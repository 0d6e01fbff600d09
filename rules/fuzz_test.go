package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules/snapshot"
	"github.com/happen-dev/happen/rulesets"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, fail
// only with Errors, and place every diagnostic on a line of the file. What
// it accepts must run.
func FuzzParse(f *testing.F) {
	f.Add(rulesets.Default)
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	plugins := catalog{"alerting": {"url", "format", "headers"}, "backpressure": nil}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(d Diagnostic) {
			if d.Pos.Line <= 0 || d.Pos.Col <= 0 || d.Pos.File != "fuzz.yaml" {
				t.Fatalf("diagnostic without a place: %q", d.Error())
			}
		}
		rs, err := Parse("fuzz.yaml", data, LoadOptions{Plugins: plugins, Warn: check})
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not Errors", err, err)
			}
			for _, d := range errs {
				check(d)
			}
			if rs != nil {
				t.Fatal("ruleset returned with errors")
			}
			return
		}
		var m vm.VM
		st := &snapshot.State{Nodes: []snapshot.Node{{ID: "n"}}, Groups: []snapshot.Group{{Name: "g"}}}
		for _, r := range rs.Rules {
			if r.when == nil || len(r.Fingerprint) != 64 {
				t.Fatalf("rule %q accepted uncompiled", r.Name)
			}
			var env any
			switch r.Scope {
			case ScopeNode:
				env = &NodeEnv{Node: &st.Nodes[0], Group: &st.Groups[0], System: &st.System}
			case ScopeGroup:
				env = &GroupEnv{Group: &st.Groups[0], System: &st.System}
			default:
				env = &SystemEnv{System: &st.System}
			}
			// A run-time error is allowed; a panic or a hang is not.
			_, _ = r.Match(&m, env)
			_, _ = r.Cleared(&m, env, true)
		}
	})
}
