package rules

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// folderRetry is how often a watched folder that went away is looked for.
	folderRetry = time.Second
	// maxDelay bounds, in debounce periods, how long events arriving without
	// pause put off a reload.
	maxDelay = 10
)

// Watcher reloads rulesets when their files change.
//
// It watches folders, never files: each folder path, and the folder of each
// file path. Editors save by renaming a new file over the old one, and
// Kubernetes updates a mounted ConfigMap by swapping a ..data symlink, so a
// ruleset changes without any event naming its file. Every event in a
// watched folder therefore counts, and a hash of the content a load would
// read tells real changes from noise.
type Watcher struct {
	paths    []string
	opts     LoadOptions
	debounce time.Duration
	retry    time.Duration
	log      *slog.Logger
	w        *fsnotify.Watcher
	dirs     map[string]bool // folder paths given, cleaned
	// watched holds every folder to watch, true while a watch is in place.
	// Only Run touches it once NewWatcher has returned.
	watched map[string]bool
	last    [32]byte // content hash of the files last loaded or refused
}

// WatchOption configures a Watcher.
type WatchOption func(*Watcher)

// WatchLogger sets where the Watcher reports trouble with the watch itself,
// such as lost events or a watched folder gone. By default it reports
// nothing.
func WatchLogger(l *slog.Logger) WatchOption {
	return func(w *Watcher) {
		if l != nil {
			w.log = l
		}
	}
}

// NewWatcher prepares a watch of paths (files or folders). Their content now
// counts as loaded, so a save that changes nothing is not reported.
func NewWatcher(paths []string, opts LoadOptions, debounce time.Duration, wopts ...WatchOption) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch rules: %w", err)
	}
	rw := &Watcher{
		paths:    paths,
		opts:     opts,
		debounce: debounce,
		retry:    folderRetry,
		log:      slog.New(slog.DiscardHandler),
		w:        w,
		dirs:     map[string]bool{},
		watched:  map[string]bool{},
	}
	for _, o := range wopts {
		o(rw)
	}
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
			dir = filepath.Dir(p)
		}
		if rw.watched[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch rules folder %s: %w", dir, err)
		}
		rw.watched[dir] = true
	}
	rw.last, _ = rw.hash()
	return rw, nil
}

// Run calls apply with each newly loaded set, or with the load error of a
// refused change (the caller keeps its previous set), until ctx ends. Bursts
// of file events within the debounce period make one reload. While a watched
// folder is gone nothing is loaded; it is looked for every second and the
// rules are reloaded once it is back. Run closes the Watcher when it
// returns.
func (rw *Watcher) Run(ctx context.Context, apply func(*Set, error)) error {
	defer rw.w.Close()
	var (
		timer *time.Timer
		fire  <-chan time.Time
		retry *time.Ticker
		look  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if retry != nil {
			retry.Stop()
		}
	}()
	var burst time.Time // when the pending burst of events began
	schedule := func() {
		if fire != nil && time.Since(burst) >= maxDelay*rw.debounce {
			return // a folder never quiet must not hold back reloads for ever
		}
		if fire == nil {
			burst = time.Now()
		}
		if timer == nil {
			timer = time.NewTimer(rw.debounce)
		} else {
			timer.Reset(rw.debounce)
		}
		fire = timer.C
	}
	// track starts or stops looking for missing folders.
	track := func() {
		switch {
		case rw.missing() && retry == nil:
			retry = time.NewTicker(rw.retry)
			look = retry.C
		case !rw.missing() && retry != nil:
			retry.Stop()
			retry, look = nil, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-rw.w.Errors:
			if !ok {
				return nil
			}
			// Typically an event queue overflow: events were lost, maybe
			// the removal of a watched folder too. Renew every watch and
			// compare content, rather than refuse rules that are fine.
			rw.log.Warn("rules watch error; reloading in case changes were missed", "err", err)
			rw.rewatch(true)
			track()
			schedule()
		case ev, ok := <-rw.w.Events:
			if !ok {
				return nil
			}
			name := filepath.Clean(ev.Name)
			if _, isDir := rw.watched[name]; isDir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				if rw.lose(name) {
					schedule()
				}
				track()
				continue
			}
			if _, ok := rw.watched[filepath.Dir(name)]; ok {
				schedule()
			}
		case <-look:
			if rw.rewatch(false) {
				schedule()
			}
			track()
		case <-fire:
			fire = nil
			rw.reload(apply)
			track()
		}
	}
}

// lose drops the watch of a folder that was removed or renamed, and tries
// at once to watch what may already stand in its place. It tells whether
// that worked.
func (rw *Watcher) lose(dir string) bool {
	// The watch may be gone already; nothing else can fail here.
	_ = rw.w.Remove(dir)
	if rw.watched[dir] {
		rw.log.Warn("rules folder gone; keeping the loaded rules until it is back", "folder", dir)
	}
	rw.watched[dir] = false
	if err := rw.w.Add(dir); err != nil {
		return false
	}
	rw.watched[dir] = true
	rw.log.Info("rules folder back", "folder", dir)
	return true
}

// rewatch adds the watch of every folder, or with all unset of the missing
// ones only, and tells whether a missing folder is watched again.
func (rw *Watcher) rewatch(all bool) (back bool) {
	for dir, ok := range rw.watched {
		if ok && !all {
			continue
		}
		if err := rw.w.Add(dir); err != nil {
			if ok {
				_ = rw.w.Remove(dir)
				rw.log.Warn("rules folder gone; keeping the loaded rules until it is back", "folder", dir, "err", err)
			}
			rw.watched[dir] = false
			continue
		}
		if !ok {
			rw.log.Info("rules folder back", "folder", dir)
			back = true
		}
		rw.watched[dir] = true
	}
	return back
}

func (rw *Watcher) missing() bool {
	for _, ok := range rw.watched {
		if !ok {
			return true
		}
	}
	return false
}

// reload loads the rules if their content changed since last tried.
func (rw *Watcher) reload(apply func(*Set, error)) {
	// The removal of a folder may not have been reported yet: its files
	// would be refused as missing when they are merely being replaced.
	for dir, ok := range rw.watched {
		if fi, err := os.Stat(dir); ok && (err != nil || !fi.IsDir()) {
			rw.lose(dir)
		}
	}
	if rw.missing() {
		return
	}
	h, err := rw.hash()
	if err == nil && h == rw.last {
		rw.log.Debug("rules files touched but unchanged")
		return
	}
	// Remember what was tried, good or bad: a fix after a refused change
	// differs from it, and so is always loaded and announced. A file read
	// while half written is refused, and the write's next event reloads.
	rw.last = h
	set, err := LoadPaths(rw.paths, rw.opts)
	if err != nil {
		apply(nil, err)
		return
	}
	apply(set, nil)
}

// hash covers every file a load would read, so a save that changes nothing
// does not reload. Reading follows symlinks, so swapping the target of a
// linked file counts as a change.
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
				name := filepath.Join(p, e.Name())
				// What a load skips is not read here either.
				if !e.IsDir() && isRulesFile(e.Name()) && isRegular(name) {
					names = append(names, name)
				}
			}
		} else if !isRegular(p) {
			return [32]byte{}, fmt.Errorf("%s is not a regular file", p)
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
