//go:build unix

package rules

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A pipe named like a ruleset is skipped in a folder and refused by name:
// reading it would block the engine.
func TestLoadSkipsNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "good.yaml"), []byte("version: 1\nname: g\nrules:\n  - name: r\n    when: node.stalled\n    pattern: p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	set, err := LoadPaths([]string{dir}, LoadOptions{})
	if err != nil || len(set.Files) != 1 {
		t.Fatalf("folder with a pipe: %v, %+v", err, set)
	}
	if _, err := LoadPaths([]string{fifo}, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("pipe by name: %v", err)
	}
}

// A pipe or a dangling link in a rules folder is skipped by the watcher as
// by a load: it neither blocks the watcher on a read that never returns
// nor stops it from seeing real changes.
func TestWatchSkipsPipesAndDanglingLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), variant("a"))
	wr := startWatch(t, dir)
	fifo := filepath.Join(dir, "b.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Should the watcher block on the pipe, a writer lets the test end.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	if err := os.Symlink(filepath.Join(dir, "missing.yaml"), filepath.Join(dir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(dir, "a.yaml"), variant("x"))
	wr.waitSet(t, "x")
	wr.noRefusals(t)
}
