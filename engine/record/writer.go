package record

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// Defaults of Config.
const (
	DefaultMaxSize = 64 << 20
	DefaultKeep    = 5
	// DefaultQueue is how many ticks may wait for the disk. The tick only
	// encodes its line (about 1µs a consumer, see BenchmarkEncode) and
	// hands it over; a disk that stalls for this many intervals costs
	// ticks of the recording, never a late tick.
	DefaultQueue = 64
	// MinMaxSize keeps a file large enough for its header and some ticks.
	MinMaxSize = 4 << 10
)

// Config says where and how a Writer records.
type Config struct {
	Path string
	// MaxSize is the size FILE may reach before it is rotated; default
	// DefaultMaxSize. A single tick larger than it gets a file of its own.
	MaxSize int64
	// Keep is how many rotated files are kept beside FILE (FILE.1 is the
	// newest); 0 keeps none. The disk used is at most (Keep+1)*MaxSize.
	Keep int
	// Interval, Instance and Start go into every file's header. Start
	// defaults to now.
	Interval time.Duration
	Instance string
	Start    time.Time
	// Queue is how many ticks may wait for the disk before new ones are
	// dropped; default DefaultQueue.
	Queue  int
	Logger *slog.Logger
}

// Writer records ticks to a file, rotating it by size. Record and
// RecordBlind only encode the tick and queue it; a goroutine owned by the
// Writer writes it. When the disk falls so far behind that the queue is
// full, ticks are dropped, counted and warned about; the recording says
// where. Close flushes everything queued.
type Writer struct {
	cfg Config
	log *slog.Logger
	hdr []byte

	mu       sync.Mutex // orders queue sends with Close
	closed   bool
	queue    chan item
	pending  uint64    // ticks dropped since the last one queued
	warnedAt time.Time // of the last drop warning

	dropped atomic.Uint64
	done    chan struct{}

	// Owned by the writing goroutine until done is closed.
	f       *os.File
	bw      *bufio.Writer
	size    int64
	failAt  time.Time // of the last write error logged
	failErr error     // the first write error, for Close
}

type item struct {
	line    *[]byte
	dropped uint64 // ticks dropped just before this one
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Create opens cfg.Path for appending (creating it if needed) and starts
// recording. A file that ends in a partial line, left by an engine killed
// mid-write, is cut back to its last whole line first.
func Create(cfg Config) (*Writer, error) {
	if cfg.Path == "" {
		return nil, errors.New("record: no file given")
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.MaxSize < MinMaxSize {
		return nil, fmt.Errorf("record %s: max size %d bytes is below the minimum of %d", cfg.Path, cfg.MaxSize, MinMaxSize)
	}
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("record %s: %d rotated files to keep; want 0 or more", cfg.Path, cfg.Keep)
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("record %s: interval %v is not positive", cfg.Path, cfg.Interval)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		cfg:   cfg,
		log:   cfg.Logger.With("recording", cfg.Path),
		hdr:   encodeHeader(Header{Version: Version, Interval: cfg.Interval, Start: cfg.Start, Instance: cfg.Instance}),
		queue: make(chan item, cfg.Queue),
		done:  make(chan struct{}),
	}
	if err := w.openAppend(); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// Record queues one successful sample. It never blocks on the disk.
func (w *Writer) Record(s flow.Snapshot) {
	if s.At.IsZero() {
		w.log.Warn("not recording a sample without a time")
		return
	}
	b := bufs.Get().(*[]byte)
	*b = appendSnapshot((*b)[:0], &s)
	w.enqueue(b)
}

// RecordBlind queues one failed sample: the engine was blind at at.
func (w *Writer) RecordBlind(at time.Time, err error) {
	if at.IsZero() {
		at = time.Now()
	}
	b := bufs.Get().(*[]byte)
	*b = appendBlind((*b)[:0], at, err)
	w.enqueue(b)
}

func (w *Writer) enqueue(b *[]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		bufs.Put(b)
		return
	}
	select {
	case w.queue <- item{line: b, dropped: w.pending}:
		w.pending = 0
	default:
		bufs.Put(b)
		w.pending++
		n := w.dropped.Add(1)
		if now := time.Now(); now.Sub(w.warnedAt) >= time.Minute {
			w.warnedAt = now
			w.log.Warn("recording falls behind: the disk is too slow, ticks dropped from the recording", "dropped", n)
		}
	}
}

// Dropped is how many ticks were dropped because the disk fell behind or
// failed.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Close writes everything queued, closes the file and returns the first
// write error, if any. Ticks recorded after Close are ignored.
func (w *Writer) Close() error { return w.CloseContext(context.Background()) }

// CloseContext is Close, waiting for the disk no longer than ctx allows: a
// hung disk must not hold up the engine's exit. When ctx ends first, the
// writer finishes in the background and ctx's error is returned.
func (w *Writer) CloseContext(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return w.failErr
	case <-ctx.Done():
		return fmt.Errorf("close recording %s: %w", w.cfg.Path, ctx.Err())
	}
}

func (w *Writer) run() {
	defer close(w.done)
	for it := range w.queue {
		if it.dropped > 0 {
			w.write(appendDropped(nil, it.dropped))
		}
		w.write(*it.line)
		bufs.Put(it.line)
		// Flushed whenever the queue is empty: a tick reaches the file
		// within its interval, and a backlog goes out in large writes.
		if len(w.queue) == 0 {
			w.flush()
		}
	}
	w.flush()
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			w.fail(fmt.Errorf("close %s: %w", w.cfg.Path, err))
		}
		w.f = nil
	}
}

// write puts one line in the file, rotating first when it would grow past
// the limit. A line that cannot be written is lost, counted as dropped.
func (w *Writer) write(b []byte) {
	if w.f == nil {
		// A rotation failed to open the new file; try again.
		if err := w.openNew(); err != nil {
			w.fail(err)
			w.dropped.Add(1)
			return
		}
	}
	if w.size > int64(len(w.hdr)) && w.size+int64(len(b)) > w.cfg.MaxSize {
		if err := w.rotate(); err != nil {
			w.fail(err)
			w.dropped.Add(1)
			return
		}
	}
	n, err := w.bw.Write(b)
	w.size += int64(n)
	if err != nil {
		w.fail(fmt.Errorf("write %s: %w", w.cfg.Path, err))
		w.dropped.Add(1)
	}
}

func (w *Writer) flush() {
	if w.bw == nil {
		return
	}
	if err := w.bw.Flush(); err != nil {
		w.fail(fmt.Errorf("write %s: %w", w.cfg.Path, err))
	}
}

// fail logs a write error at most once a minute, and keeps the first.
func (w *Writer) fail(err error) {
	if w.failErr == nil {
		w.failErr = err
	}
	if now := time.Now(); now.Sub(w.failAt) >= time.Minute {
		w.failAt = now
		w.log.Error("recording: cannot write; ticks are lost until it can", "error", err)
	}
}

// openAppend opens FILE to append this run, after a header of its own.
func (w *Writer) openAppend() error {
	path := w.cfg.Path
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open recording: %w", err)
	}
	size, err := cutPartialLine(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("open recording %s: %w", path, err)
	}
	if size > 0 {
		w.log.Info("appending to an existing recording", "size", size)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("open recording %s: %w", path, err)
	}
	w.f, w.bw, w.size = f, bufio.NewWriterSize(f, 64<<10), size
	if size > 0 && size+int64(len(w.hdr)) > w.cfg.MaxSize {
		return w.rotate()
	}
	if _, err := w.bw.Write(w.hdr); err != nil {
		f.Close()
		return fmt.Errorf("write recording %s: %w", path, err)
	}
	w.size += int64(len(w.hdr))
	// The header is on disk before the first tick: a recording that has
	// just begun already names its run.
	if err := w.bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write recording %s: %w", path, err)
	}
	return nil
}

// cutPartialLine truncates f after its last newline and returns its size.
func cutPartialLine(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	// Search backwards, a block at a time, for the last whole line.
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	return end, nil
}

// rotate moves FILE to FILE.1 (and each FILE.k to FILE.k+1, dropping what
// is beyond Keep) and starts a new FILE.
func (w *Writer) rotate() error {
	w.flush()
	if w.f != nil {
		w.f.Close()
		w.f, w.bw = nil, nil
	}
	path, keep := w.cfg.Path, w.cfg.Keep
	for _, k := range rotatedBeyond(path, keep) {
		if err := os.Remove(rotated(path, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate recording: %w", err)
		}
	}
	if keep == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate recording: %w", err)
		}
	} else {
		for k := keep - 1; k >= 1; k-- {
			if err := os.Rename(rotated(path, k), rotated(path, k+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("rotate recording: %w", err)
			}
		}
		if err := os.Rename(path, rotated(path, 1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate recording: %w", err)
		}
	}
	return w.openNew()
}

// openNew starts FILE afresh with the header.
func (w *Writer) openNew() error {
	f, err := os.OpenFile(w.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open recording: %w", err)
	}
	w.f, w.bw, w.size = f, bufio.NewWriterSize(f, 64<<10), 0
	n, err := w.bw.Write(w.hdr)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write recording %s: %w", w.cfg.Path, err)
	}
	return nil
}

func rotated(path string, k int) string { return path + "." + strconv.Itoa(k) }

// rotatedFiles returns the k of every FILE.k that exists, highest first.
func rotatedFiles(path string) ([]int, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ks []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || e.IsDir() {
			continue
		}
		k, err := strconv.Atoi(rest)
		if err != nil || k < 1 || strconv.Itoa(k) != rest {
			continue
		}
		ks = append(ks, k)
	}
	// Highest first: the oldest file first.
	slices.SortFunc(ks, func(a, b int) int { return b - a })
	return ks, nil
}

// rotatedBeyond returns the k > keep-1 of every FILE.k that exists: those
// a rotation would push past keep. Left by an earlier run that kept more,
// they are dropped too, so the disk stays bounded.
func rotatedBeyond(path string, keep int) []int {
	ks, _ := rotatedFiles(path)
	var out []int
	for _, k := range ks {
		if k >= keep {
			out = append(out, k)
		}
	}
	return out
}
