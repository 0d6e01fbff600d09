package rules

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher reloads rulesets when their files change. It watches the folder
// of each path rather than the file itself, because editors often save by
// writing a new file and renaming it over the old one, which would end a
// watch on the file.
type Watcher struct {
	paths    []string
	opts     LoadOptions
	debounce time.Duration
	w        *fsnotify.Watcher
	files    map[string]bool // watched single files, cleaned
	dirs     map[string]bool // watched whole folders, cleaned
	last     [32]byte        // content hash of the files last loaded or refused
}

// NewWatcher prepares a watch of paths (files or folders). Their content now
// counts as loaded, so a save that changes nothing is not reported.
func NewWatcher(paths []string, opts LoadOptions, debounce time.Duration) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch rules: %w", err)
	}
	rw := &Watcher{paths: paths, opts: opts, debounce: debounce, w: w, files: map[string]bool{}, dirs: map[string]bool{}}
	for _, p := range paths {
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("watch rules %s: %w", p, err)
		}
		dir := p
		if fi.IsDir() {
			rw.dirs[p] = true
		} else {
			rw.files[p] = true
			dir = filepath.Dir(p)
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch rules folder %s: %w", dir, err)
		}
	}
	rw.last, _ = rw.hash()
	return rw, nil
}

// Run calls apply with each newly loaded set, or with the load error of a
// refused change (the caller keeps its previous set), until ctx ends. Bursts
// of file events within the debounce period make one reload.
func (rw *Watcher) Run(ctx context.Context, apply func(*Set, error)) error {
	defer rw.w.Close()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case err, ok := <-rw.w.Errors:
			if !ok {
				return nil
			}
			apply(nil, fmt.Errorf("watch rules: %w", err))
		case ev, ok := <-rw.w.Events:
			if !ok {
				return nil
			}
			if !rw.relevant(ev) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(rw.debounce)
			} else {
				timer.Reset(rw.debounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			h, err := rw.hash()
			if err == nil && h == rw.last {
				continue // saved without change
			}
			// Remember what was tried, good or bad: a fix after a refused
			// change differs from it, and so is always loaded and announced.
			rw.last = h
			set, err := LoadPaths(rw.paths, rw.opts)
			if err != nil {
				apply(nil, err)
				continue
			}
			apply(set, nil)
		}
	}
}

func (rw *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if rw.files[name] {
		return true
	}
	return rw.dirs[filepath.Dir(name)] && isRulesFile(filepath.Base(name))
}

// hash covers every file a load would read, so a save that changes nothing
// does not reload.
func (rw *Watcher) hash() ([32]byte, error) {
	h := sha256.New()
	for _, p := range rw.paths {
		p = filepath.Clean(p)
		names := []string{p}
		if rw.dirs[p] {
			entries, err := os.ReadDir(p)
			if err != nil {
				return [32]byte{}, err
			}
			names = names[:0]
			for _, e := range entries {
				if !e.IsDir() && isRulesFile(e.Name()) {
					names = append(names, filepath.Join(p, e.Name()))
				}
			}
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return [32]byte{}, err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
			h.Write(b)
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// isRulesFile tells ruleset files from editor leftovers in a folder.
func isRulesFile(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") {
		return false
	}
	for _, s := range []string{"~", ".swp", ".tmp"} {
		if strings.HasSuffix(name, s) {
			return false
		}
	}
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}
