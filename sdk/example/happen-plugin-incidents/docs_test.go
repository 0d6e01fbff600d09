package main

import (
	"os"
	"strings"
	"testing"
)

// docs/plugins.md shows this plugin in full; what readers copy must be what
// is built and tested here.
func TestDocsShowThisPlugin(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```") {
		t.Fatal("docs/plugins.md does not show main.go as it is: copy main.go into its code block")
	}
}
