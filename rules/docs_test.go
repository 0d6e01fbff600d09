package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every complete ruleset shown in the user docs must load: the docs are
// part of what users run.
func TestDocsExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("docs: %v", err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllSubmatch(b, -1) {
			src := string(m[1])
			if !strings.HasPrefix(src, "version: 1") {
				continue // a fragment, not a ruleset
			}
			found++
			name := filepath.Base(f) + "#" + string(rune('a'+i))
			if _, err := Parse(name, []byte(src), LoadOptions{}); err != nil {
				t.Errorf("%s: example does not load:\n%v", name, err)
			}
		}
	}
	if found == 0 {
		t.Fatal("no ruleset examples found in docs/")
	}
}
