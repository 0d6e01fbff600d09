package rulesets_test

import (
	"strings"
	"testing"

	"github.com/happen-dev/happen/rules/ruletest"
)

// The rule tests in tests/ say what the built-in ruleset must tell apart
// (docs/rules.md); they run with every `go test`, as `happen rules test
// rulesets/tests` would run them.
func TestBuiltinRuleTests(t *testing.T) {
	files, err := ruletest.Paths([]string{"tests"})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		f, err := ruletest.Load(path)
		if err != nil {
			t.Errorf("%s\n", strings.Join(ruletest.Diagnostics(err), "\n"))
			continue
		}
		for _, r := range f.Run() {
			t.Run(r.Test.Name, func(t *testing.T) {
				if !r.Passed() {
					t.Errorf("%s: %s\n%s", r.Test.Pos, r.Test.Name, r.Report())
				}
			})
		}
	}
}
