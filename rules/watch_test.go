package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rulesets"
)

const (
	watchDebounce = 50 * time.Millisecond
	watchWait     = 10 * time.Second
)

// variant is the default ruleset with its name and rule names prefixed, so
// several can be loaded together and each set tells which were read.
func variant(prefix string) string {
	s := string(rulesets.Default)
	s = strings.Replace(s, "\nname: default\n", "\nname: "+prefix+"\n", 1)
	return strings.ReplaceAll(s, "\n  - name: ", "\n  - name: "+prefix+"-")
}

// prefixes names the variants a set was loaded from, sorted: "a,b".
func prefixes(s *Set) string {
	seen := map[string]bool{}
	for _, r := range s.Rules {
		p, _, _ := strings.Cut(r.Name, "-")
		seen[p] = true
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

type applyCall struct {
	set *Set
	err error
}

// watchRun is a running Watcher and what it has reported.
type watchRun struct {
	rw   *Watcher
	logs *testutil.LogBuffer
	mu   sync.Mutex
	got  []applyCall
	done chan error
	stop context.CancelFunc
}

func startWatch(t *testing.T, paths ...string) *watchRun {
	t.Helper()
	wr := &watchRun{logs: &testutil.LogBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(wr.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rw, err := NewWatcher(paths, LoadOptions{}, watchDebounce, WatchLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	wr.rw = rw
	ctx, cancel := context.WithCancel(context.Background())
	wr.stop = cancel
	go func() { wr.done <- rw.Run(ctx, wr.apply) }()
	t.Cleanup(func() { wr.halt(t) })
	return wr
}

func (wr *watchRun) apply(s *Set, err error) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	wr.got = append(wr.got, applyCall{s, err})
}

// halt ends Run and waits for it to return.
func (wr *watchRun) halt(t *testing.T) {
	t.Helper()
	wr.stop()
	select {
	case err, ok := <-wr.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(wr.done)
		}
	case <-time.After(watchWait):
		t.Fatal("Run did not return after its context ended")
	}
}

func (wr *watchRun) calls() []applyCall {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return append([]applyCall(nil), wr.got...)
}

// waitSet waits until the latest call applied a set read from the variants
// want ("a,b"). A file written in place may be read half written and
// refused first; see noRefusals.
func (wr *watchRun) waitSet(t *testing.T, want string) {
	t.Helper()
	testutil.Eventually(t, watchWait, func() bool {
		c := wr.calls()
		return len(c) > 0 && c[len(c)-1].set != nil && prefixes(c[len(c)-1].set) == want
	}, "set of variants %s applied; calls: %s", want, wr)
}

// noRefusals fails the test if any change was refused, for tests whose
// every change is atomic.
func (wr *watchRun) noRefusals(t *testing.T) {
	t.Helper()
	for _, c := range wr.calls() {
		if c.err != nil {
			t.Fatalf("a change was refused: %v", c.err)
		}
	}
}

// String lists the calls so far, for failure messages.
func (wr *watchRun) String() string { return describeCalls(wr.calls()) }

// logged counts records at level with message msg.
func (wr *watchRun) logged(t *testing.T, level slog.Level, msg string) int {
	t.Helper()
	n := 0
	for _, r := range wr.logs.Records(t, level) {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

func describeCalls(cs []applyCall) string {
	var b strings.Builder
	for _, c := range cs {
		if c.err != nil {
			b.WriteString("[refused] ")
		} else {
			b.WriteString("[" + prefixes(c.set) + "] ")
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile saves content as editors do: written to a leftover name a
// folder load skips, then renamed over path, so no reader sees it half
// written.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// watchModes runs a test with the ruleset file watched through its folder
// and as a single file.
func watchModes(t *testing.T, test func(t *testing.T, dir, file string, watch string)) {
	for _, mode := range []string{"folder", "file"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "rules.yaml")
			watch := dir
			if mode == "file" {
				watch = file
			}
			test(t, dir, file, watch)
		})
	}
}

func TestWatchEditInPlace(t *testing.T) {
	t.Parallel()
	watchModes(t, func(t *testing.T, dir, file, watch string) {
		writeFile(t, file, variant("a"))
		wr := startWatch(t, watch)
		writeFile(t, file, variant("b"))
		wr.waitSet(t, "b")
		writeFile(t, file, variant("c"))
		wr.waitSet(t, "c")
	})
}

func TestWatchRenameSave(t *testing.T) {
	t.Parallel()
	watchModes(t, func(t *testing.T, dir, file, watch string) {
		writeFile(t, file, variant("a"))
		wr := startWatch(t, watch)
		for _, v := range []string{"b", "c"} {
			replaceFile(t, file, variant(v))
			wr.waitSet(t, v)
		}
		wr.noRefusals(t)
	})
}

func TestWatchFolderFileAddedRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), variant("a"))
	wr := startWatch(t, dir)
	replaceFile(t, filepath.Join(dir, "b.yml"), variant("b"))
	wr.waitSet(t, "a,b")
	if err := os.Remove(filepath.Join(dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	wr.waitSet(t, "a")
	wr.noRefusals(t)
}

// configMap lays dir out the way the kubelet mounts a ConfigMap: each file
// a symlink through ..data to a timestamped folder.
type configMap struct {
	t   *testing.T
	dir string
	gen int
}

func newConfigMap(t *testing.T, dir, content string) *configMap {
	cm := &configMap{t: t, dir: dir}
	cm.update(content)
	if err := os.Symlink(filepath.Join("..data", "rules.yaml"), filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	return cm
}

// update publishes content as the kubelet does: a new folder, then an
// atomic swap of the ..data symlink, then the old folder removed.
func (cm *configMap) update(content string) {
	t := cm.t
	cm.gen++
	old := filepath.Join(cm.dir, fmt.Sprintf("..2026_v%d", cm.gen-1))
	ts := fmt.Sprintf("..2026_v%d", cm.gen)
	if err := os.Mkdir(filepath.Join(cm.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cm.dir, ts, "rules.yaml"), content)
	tmp := filepath.Join(cm.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cm.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if cm.gen > 1 {
		if err := os.RemoveAll(old); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatchConfigMap(t *testing.T) {
	t.Parallel()
	watchModes(t, func(t *testing.T, dir, file, watch string) {
		cm := newConfigMap(t, dir, variant("a"))
		wr := startWatch(t, watch)
		cm.update(variant("b"))
		wr.waitSet(t, "b")
		cm.update(variant("c"))
		wr.waitSet(t, "c")
		wr.noRefusals(t)
		if got := wr.calls()[len(wr.calls())-1].set.Files; len(got) != 1 || got[0] != file {
			t.Errorf("set files = %v, want the linked name %s", got, file)
		}
	})
}

func TestWatchUnchangedSave(t *testing.T) {
	t.Parallel()
	watchModes(t, func(t *testing.T, dir, file, watch string) {
		writeFile(t, file, variant("a"))
		wr := startWatch(t, watch)
		const unchanged = "rules files touched but unchanged"
		replaceFile(t, file, variant("a"))
		testutil.Eventually(t, watchWait, func() bool { return wr.logged(t, slog.LevelDebug, unchanged) >= 1 },
			"the save was checked")
		now := time.Now()
		if err := os.Chtimes(file, now, now); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, watchWait, func() bool { return wr.logged(t, slog.LevelDebug, unchanged) >= 2 },
			"the touch was checked")
		// Other files in the folder are no ruleset of a watched file or
		// are skipped by a folder load.
		writeFile(t, filepath.Join(dir, "notes.txt"), "not: [yaml")
		testutil.Eventually(t, watchWait, func() bool { return wr.logged(t, slog.LevelDebug, unchanged) >= 3 },
			"the other file was checked")
		if c := wr.calls(); len(c) != 0 {
			t.Fatalf("apply called for saves that changed nothing: %s", describeCalls(c))
		}
		replaceFile(t, file, variant("b"))
		wr.waitSet(t, "b")
		if c := wr.calls(); len(c) != 1 {
			t.Errorf("want one reload, got %s", describeCalls(c))
		}
	})
}

func TestWatchRefusedThenFixed(t *testing.T) {
	t.Parallel()
	watchModes(t, func(t *testing.T, dir, file, watch string) {
		writeFile(t, file, variant("a"))
		wr := startWatch(t, watch)
		replaceFile(t, file, "version: 1\nname: broken\nrules: [")
		testutil.Eventually(t, watchWait, func() bool { return len(wr.calls()) == 1 }, "the broken change was reported")
		c := wr.calls()[0]
		var faults Errors
		if c.set != nil || !errors.As(c.err, &faults) || len(faults) == 0 {
			t.Fatalf("apply(%v, %v), want no set and rules.Errors", c.set, c.err)
		}
		if faults[0].Pos.File != file {
			t.Errorf("fault at %s, want in %s", faults[0].Pos, file)
		}
		// Restoring exactly the content loaded before is a fix too.
		replaceFile(t, file, variant("a"))
		testutil.Eventually(t, watchWait, func() bool { return len(wr.calls()) == 2 }, "the fix was loaded")
		if c := wr.calls()[1]; c.err != nil || prefixes(c.set) != "a" {
			t.Fatalf("after the fix: %s %v", describeCalls([]applyCall{c}), c.err)
		}
	})
}

func TestWatchFolderRecreated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		file   bool // watch the file, not its folder
		rename bool // move the folder away instead of deleting it
	}{
		{"folder deleted", false, false},
		{"folder renamed", false, true},
		{"file's folder deleted", true, false},
		{"file's folder renamed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			dir := filepath.Join(root, "rules")
			file := filepath.Join(dir, "rules.yaml")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, file, variant("a"))
			watch := dir
			if tc.file {
				watch = file
			}
			wr := startWatch(t, watch)
			if tc.rename {
				if err := os.Rename(dir, filepath.Join(root, "old")); err != nil {
					t.Fatal(err)
				}
			} else if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, watchWait, func() bool {
				return wr.logged(t, slog.LevelWarn, "rules folder gone; keeping the loaded rules until it is back") >= 1
			}, "the loss was noticed")
			if tc.rename {
				// One event, the folder's own: nothing was loaded or refused.
				if c := wr.calls(); len(c) != 0 {
					t.Fatalf("apply called while the folder was away: %s", describeCalls(c))
				}
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, file, variant("b"))
			testutil.Eventually(t, watchWait, func() bool {
				c := wr.calls()
				return len(c) > 0 && c[len(c)-1].set != nil && prefixes(c[len(c)-1].set) == "b"
			}, "the recreated folder was loaded; calls: %s", wr)
			// The watch itself is back.
			writeFile(t, file, variant("c"))
			testutil.Eventually(t, watchWait, func() bool {
				c := wr.calls()
				return c[len(c)-1].set != nil && prefixes(c[len(c)-1].set) == "c"
			}, "an edit after recreation was loaded")
		})
	}
}

// A watch error means events were lost: the watcher reloads instead of
// refusing the rules, and renews its watches.
func TestWatchErrorReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	writeFile(t, file, variant("a"))
	wr := startWatch(t, dir)
	// Lose the watch and change the file unseen, as an overflowing event
	// queue would.
	if err := wr.rw.w.Remove(dir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, variant("b"))
	wr.rw.w.Errors <- fsnotify.ErrEventOverflow
	wr.waitSet(t, "b")
	wr.noRefusals(t)
	if n := wr.logged(t, slog.LevelWarn, "rules watch error; reloading in case changes were missed"); n != 1 {
		t.Errorf("watch error logged %d times, want 1:\n%s", n, wr.logs.String())
	}
	writeFile(t, file, variant("c"))
	wr.waitSet(t, "c")
}

// Run returns when its context ends, also while it looks for a missing
// folder, and leaves no goroutine behind.
func TestWatchRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	root := t.TempDir()
	dir := filepath.Join(root, "rules")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules.yaml"), variant("a"))
	wr := startWatch(t, dir)
	if err := os.Rename(dir, filepath.Join(root, "old")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, watchWait, func() bool {
		return wr.logged(t, slog.LevelWarn, "rules folder gone; keeping the loaded rules until it is back") == 1
	}, "the loss was noticed")
	wr.halt(t)
	if err := wr.rw.w.Add(root); !errors.Is(err, fsnotify.ErrClosed) {
		t.Errorf("fsnotify watcher still open after Run: Add = %v", err)
	}
	testutil.Eventually(t, watchWait, func() bool { return runtime.NumGoroutine() <= before },
		"goroutines back to %d", before)
}
