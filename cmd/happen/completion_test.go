package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command an operator can run shows an example in its --help.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newRoot()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		// cobra's own completion commands carry their examples in Long.
		if c.Name() == "completion" && c.Parent() == root {
			return
		}
		seen++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example in its --help", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if seen < 5 {
		t.Fatalf("walked only %d commands", seen)
	}
}

func complete(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("complete %v: %v", args, err)
	}
	return out.String()
}

func TestCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"engine", "rules", "version", "completion"}},
		{[]string{"engine", "--log-level", ""}, []string{"debug", "info", "warn", "error"}},
		{[]string{"engine", "--rules", ""}, []string{"yaml", "yml", ":8"}}, // :8 = filter by extension
		{[]string{"engine", "--data", ""}, []string{":16"}},                // :16 = folders only
		{[]string{"rules", "test", ""}, []string{"yaml", ":8"}},
	}
	for _, tc := range tests {
		got := complete(t, tc.args...)
		words := map[string]bool{}
		for _, line := range strings.Split(got, "\n") {
			word, _, _ := strings.Cut(line, "\t") // a description may follow
			words[word] = true
		}
		for _, w := range tc.want {
			if !words[w] {
				t.Errorf("complete %q: want %q in\n%s", tc.args, w, got)
			}
		}
	}

	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"completion", "bash"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "__start_happen") {
		t.Errorf("completion bash: no bash completion script:\n%.300s", out.String())
	}
}
