package plugins

import (
	"errors"
	"strings"
	"testing"

	"github.com/happen-dev/happen/rules"
)

// The manager is the rules loader's catalog: rules are checked against the
// plugins actually running.
func TestCatalogChecksRules(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"))
	src := `version: 1
name: t
rules:
  - name: stuck
    scope: node
    when: node.stalled
    emit: node.down
    pattern: node-failure
    actions:
      - plugin: ok
        with: { subject: s, bogus: 1 }
      - plugin: absent
      - plugin: gone
        optional: true
`
	var warnings []rules.Diagnostic
	_, err := rules.Parse("t.yaml", []byte(src), rules.LoadOptions{
		Plugins: h.m,
		Warn:    func(d rules.Diagnostic) { warnings = append(warnings, d) },
	})
	var diags rules.Errors
	if !errors.As(err, &diags) || len(diags) != 2 {
		t.Fatalf("load error = %v", err)
	}
	for i, want := range []string{
		`t.yaml:11:29: plugin "ok" has no parameter "bogus"`,
		`t.yaml:12:17: plugin "absent" is not installed`,
	} {
		if got := diags[i].Error(); !strings.HasPrefix(got, want) {
			t.Errorf("error %d = %q, want %q", i, got, want)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0].Error(), `t.yaml:13:17: plugin "gone" is not installed; optional action skipped`) {
		t.Fatalf("warnings = %v", warnings)
	}

	// With every key known, the same plugin passes.
	ok := strings.Replace(strings.Split(src, "      - plugin: absent")[0], "bogus: 1", "note: hi", 1)
	if _, err := rules.Parse("t.yaml", []byte(ok), rules.LoadOptions{Plugins: h.m}); err != nil {
		t.Fatalf("load: %v", err)
	}
}
