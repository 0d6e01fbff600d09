package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/internal/testutil"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 123456789, time.UTC)

// fullConsumer has every field of flow.ConsumerSample set, none zero.
func fullConsumer(name string, at time.Time) flow.ConsumerSample {
	return flow.ConsumerSample{
		Key:    flow.NodeKey{Stream: "ORDERS", Consumer: name},
		NodeID: "orders-" + name, Group: "eu",
		At: at.Add(-3 * time.Millisecond), Created: at.Add(-time.Hour),
		NumPending: 12, NumAckPending: 3, NumRedelivered: 1, NumWaiting: 2,
		Delivered: 4188, DeliveredStream: 4190, AckFloor: 4185, AckFloorStream: 4187,
		LastDelivery: at.Add(-40 * time.Millisecond), LastAck: at.Add(-41 * time.Millisecond),
		Leader: "nats-2", Push: true, PushBound: true, Paused: true, AckNone: true,
		AckWait:       30 * time.Second,
		MaxDeliveries: 4, Naks: 5, Terminated: 6,
		Filtered: true, OldestSeq: 4186, OldestTime: at.Add(-2 * time.Second),
	}
}

func fullSnapshot(at time.Time) flow.Snapshot {
	return flow.Snapshot{
		At: at,
		Streams: []flow.StreamSample{{
			Name: "ORDERS", At: at.Add(-time.Millisecond), LastSeq: 4200, Msgs: 4100,
			FirstSeq: 101, FirstTime: at.Add(-time.Hour), LastTime: at.Add(-2 * time.Millisecond), Bytes: 1 << 20,
			MaxMsgs: -1, MaxBytes: 1 << 30, MaxAge: 24 * time.Hour, MaxMsgsPerSubject: 10, DiscardNew: true,
		}},
		Consumers:         []flow.ConsumerSample{fullConsumer("eu-1", at)},
		Unobserved:        []flow.NodeKey{{Stream: "ORDERS", Consumer: "eu-9"}},
		UnobservedStreams: []string{"AUDIT"},
		Share:             &flow.Share{Listed: []string{"AUDIT", "ORDERS", "PAYMENTS"}, Owned: []string{"AUDIT", "ORDERS"}},
		Signals: flow.Signals{
			Servers:    true,
			Down:       []flow.ServerDown{{Name: "s3", Since: at.Add(-time.Second), LastHeard: at.Add(-30 * time.Second), Announced: true}},
			RoutesLost: 2,
			Elected:    []flow.Election{{Key: flow.NodeKey{Stream: "ORDERS", Consumer: "eu-1"}, Leader: "s1", At: at.Add(-2 * time.Second)}},
		},
	}
}

// nonZero fails when a field of v (a struct) is zero: a field added to the
// flow types must be added to the recording, and to the fixtures above.
func nonZero(t *testing.T, what string, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Errorf("%s.%s is zero in the fixture: set it, and record it", what, rv.Type().Field(i).Name)
		}
	}
}

func readAll(t *testing.T, path string) (Header, []Entry, []string) {
	t.Helper()
	var warns []string
	r, err := Open(path, func(s string) { warns = append(warns, s) })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return r.Header(), out, warns
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

func create(t *testing.T, cfg Config) *Writer {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Instance == "" {
		cfg.Instance = "host-1"
	}
	if cfg.Start.IsZero() {
		cfg.Start = t0
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4096 // the tests record faster than any engine ticks
	}
	w, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRoundTripEveryField(t *testing.T) {
	snap := fullSnapshot(t0)
	nonZero(t, "Snapshot", snap)
	nonZero(t, "ConsumerSample", snap.Consumers[0])
	nonZero(t, "StreamSample", snap.Streams[0])
	nonZero(t, "Signals", snap.Signals)
	nonZero(t, "ServerDown", snap.Signals.Down[0])
	nonZero(t, "Election", snap.Signals.Elected[0])

	// The node id is left out when it is the consumer name, and kept when
	// it is anything else, the empty string too.
	plain := fullConsumer("eu-2", t0)
	plain.NodeID = "eu-2"
	empty := fullConsumer("eu-3", t0)
	empty.NodeID = ""
	sparse := flow.ConsumerSample{Key: flow.NodeKey{Stream: "ORDERS", Consumer: "eu-4"}, NodeID: "eu-4"}
	snap.Consumers = append(snap.Consumers, plain, empty, sparse)

	path := filepath.Join(t.TempDir(), "rec.jsonl")
	w := create(t, Config{Path: path, Interval: 2 * time.Second})
	w.Record(snap)
	w.RecordBlind(t0.Add(2*time.Second), errors.New("list streams: not connected to NATS"))
	w.Record(flow.Snapshot{At: t0.Add(4 * time.Second)})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	h, es, warns := readAll(t, path)
	if want := (Header{Version: Version, Interval: 2 * time.Second, Start: t0, Instance: "host-1"}); h != want {
		t.Fatalf("header = %+v, want %+v", h, want)
	}
	if len(warns) > 0 || len(es) != 3 {
		t.Fatalf("got %d entries, warnings %v", len(es), warns)
	}
	if es[0].Kind != Tick || !reflect.DeepEqual(es[0].Snapshot, snap) || !es[0].At.Equal(t0) {
		t.Fatalf("tick:\n got %+v\nwant %+v", es[0].Snapshot, snap)
	}
	if es[1].Kind != Blind || !es[1].At.Equal(t0.Add(2*time.Second)) || es[1].Err != "list streams: not connected to NATS" {
		t.Fatalf("blind = %+v", es[1])
	}
	if es[2].Kind != Tick || !es[2].At.Equal(t0.Add(4*time.Second)) || es[2].Snapshot.Consumers != nil {
		t.Fatalf("empty tick = %+v", es[2])
	}
	if want := path + ":3"; es[1].Pos != want {
		t.Fatalf("pos = %q, want %q", es[1].Pos, want)
	}

	// Compact: no zero field is written.
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), `":0`) || strings.Contains(string(raw), `":""`) && !strings.Contains(string(raw), `"id":""`) {
		t.Fatalf("zero fields written:\n%s", raw)
	}
}

func TestRotationBoundsTheDisk(t *testing.T) {
	for _, keep := range []int{0, 1, 3} {
		t.Run(fmt.Sprint("keep ", keep), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rec")
			const maxSize = 8 << 10
			w := create(t, Config{Path: path, MaxSize: maxSize, Keep: keep})
			const ticks = 200 // about 100KB: many rotations
			for i := range ticks {
				w.Record(fullSnapshot(t0.Add(time.Duration(i) * time.Second)))
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if w.Dropped() != 0 {
				t.Fatalf("dropped %d ticks", w.Dropped())
			}
			files, _ := filepath.Glob(path + "*")
			if len(files) != keep+1 {
				t.Fatalf("files %v, want FILE and %d rotated", files, keep)
			}
			for _, f := range files {
				st, _ := os.Stat(f)
				if st.Size() > maxSize {
					t.Errorf("%s is %d bytes, more than %d", f, st.Size(), maxSize)
				}
			}
			// What is left is the newest ticks, in order, with no gap, and
			// the set reads as one run.
			_, es, _ := readAll(t, path)
			if len(es) == 0 {
				t.Fatal("nothing read back")
			}
			for i, e := range es {
				want := t0.Add(time.Duration(ticks-len(es)+i) * time.Second)
				if e.Kind != Tick || !e.At.Equal(want) {
					t.Fatalf("entry %d: %v at %v, want a tick at %v", i, e.Kind, e.At, want)
				}
			}
			if keep > 0 {
				// A rotated file alone reads as itself.
				_, one, _ := readAll(t, path+".1")
				if len(one) == 0 || len(one) >= len(es) {
					t.Fatalf("FILE.1 alone: %d entries of %d", len(one), len(es))
				}
			}
		})
	}
}

func TestLeftoverRotatedFilesBeyondKeepAreRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	w := create(t, Config{Path: path, MaxSize: MinMaxSize, Keep: 4})
	for i := range 100 {
		w.Record(fullSnapshot(t0.Add(time.Duration(i) * time.Second)))
	}
	w.Close()
	w = create(t, Config{Path: path, MaxSize: MinMaxSize, Keep: 1, Start: t0.Add(time.Hour)})
	for i := range 30 {
		w.Record(fullSnapshot(t0.Add(time.Hour + time.Duration(i)*time.Second)))
	}
	w.Close()
	if files, _ := filepath.Glob(path + "*"); len(files) != 2 {
		t.Fatalf("files %v, want FILE and FILE.1", files)
	}
}

func TestCorruptLineNamesFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	w := create(t, Config{Path: path})
	w.Record(fullSnapshot(t0))
	w.Record(fullSnapshot(t0.Add(time.Second)))
	w.Close()
	raw, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(raw), "\n")
	cases := map[string]string{
		"not json":      "{\"t\":12,\"c\":[\n",
		"no time":       "{\"c\":[{\"s\":\"ORDERS\",\"c\":\"x\"}]}\n",
		"nameless":      "{\"t\":12,\"c\":[{\"s\":\"ORDERS\"}]}\n",
		"wrong type":    "{\"t\":\"soon\"}\n",
		"empty line":    "\n",
		"newer version": "{\"happen\":\"recording\",\"v\":99,\"interval\":\"1s\",\"start\":\"2026-12-03T10:00:00Z\"}\n",
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "rec")
			os.WriteFile(p, []byte(lines[0]+lines[1]+bad+lines[2]), 0o644)
			r, err := Open(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			_, err = r.Next()
			if err == nil || !strings.HasPrefix(err.Error(), p+":3: ") {
				t.Fatalf("err = %v, want one naming %s:3", err, p)
			}
		})
	}
	t.Run("no header", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "rec")
		os.WriteFile(p, []byte(lines[1]), 0o644)
		if _, err := Open(p, nil); err == nil || !strings.Contains(err.Error(), p+":1: not a happen recording") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := Open(filepath.Join(t.TempDir(), "none"), nil); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestTruncatedLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	w := create(t, Config{Path: path})
	for i := range 3 {
		w.Record(fullSnapshot(t0.Add(time.Duration(i) * time.Second)))
	}
	w.Close()
	raw, _ := os.ReadFile(path)
	cut := raw[:len(raw)-40] // the engine was killed mid-write
	os.WriteFile(path, cut, 0o644)

	_, es, warns := readAll(t, path)
	if len(es) != 2 || len(warns) != 1 || !strings.Contains(warns[0], path+":4: last line cut short") {
		t.Fatalf("%d entries, warnings %q", len(es), warns)
	}

	// The engine starts again with the same --record: the partial line is
	// cut away and the new run follows, after a header of its own.
	w = create(t, Config{Path: path, Start: t0.Add(time.Minute), Instance: "host-2"})
	w.RecordBlind(t0.Add(time.Minute), nil)
	w.Close()
	h, es, warns := readAll(t, path)
	if len(warns) != 0 || h.Instance != "host-1" || len(es) != 4 {
		t.Fatalf("%d entries, header %+v, warnings %q", len(es), h, warns)
	}
	if es[2].Kind != Run || es[2].Header.Instance != "host-2" || !es[2].Header.Start.Equal(t0.Add(time.Minute)) {
		t.Fatalf("entry 2 = %+v, want the second run's header", es[2])
	}
	if es[3].Kind != Blind || es[3].Err != "sampling failed" {
		t.Fatalf("entry 3 = %+v", es[3])
	}
}

// A second run that rotates the first run's file away at once: the new
// file's own header starts the run.
func TestRunStartsInANewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	hdr := encodeHeader(Header{Version: Version, Interval: time.Second, Start: t0, Instance: "host-1"})
	// A first run's file too full for the second run's header.
	b := hdr
	for i := 0; len(b) <= MinMaxSize-len(hdr); i++ {
		b = appendSnapshot(b, &flow.Snapshot{At: t0.Add(time.Duration(i) * time.Second)})
	}
	os.WriteFile(path, b, 0o644)
	w := create(t, Config{Path: path, MaxSize: MinMaxSize, Keep: 2, Start: t0.Add(time.Hour)})
	w.Record(flow.Snapshot{At: t0.Add(time.Hour)})
	w.Close()
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatal("the first run's file was not rotated")
	}
	_, es, _ := readAll(t, path)
	last := es[len(es)-2:]
	if last[0].Kind != Run || !last[0].Header.Start.Equal(t0.Add(time.Hour)) || last[0].Pos != path+":1" || last[1].Kind != Tick {
		t.Fatalf("last entries %+v", last)
	}
}

func TestDroppedTicksAreCountedAndMarked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	// A writer whose disk goroutine has not started: the queue fills.
	w := &Writer{
		cfg: Config{Path: path, MaxSize: DefaultMaxSize, Interval: time.Second, Start: t0},
		log: slog.New(slog.DiscardHandler), queue: make(chan item, 2), done: make(chan struct{}),
	}
	w.hdr = encodeHeader(Header{Version: Version, Interval: time.Second, Start: t0})
	if err := w.openAppend(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		w.Record(flow.Snapshot{At: t0.Add(time.Duration(i) * time.Second)})
	}
	if w.Dropped() != 3 {
		t.Fatalf("dropped %d, want 3", w.Dropped())
	}
	go w.run()
	testutil.Eventually(t, 10*time.Second, func() bool { return len(w.queue) == 0 }, "the queue drains")
	// The disk keeps up again; the next tick says what was lost before it.
	w.Record(flow.Snapshot{At: t0.Add(5 * time.Second)})
	w.Close()
	_, es, _ := readAll(t, path)
	var kinds []string
	for _, e := range es {
		kinds = append(kinds, e.Kind.String())
	}
	if got := strings.Join(kinds, " "); got != "tick tick dropped tick" || es[2].Dropped != 3 {
		t.Fatalf("entries %s (dropped %d)", got, es[2].Dropped)
	}
}

func TestCloseIsIdempotentAndLateTicksAreIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	w := create(t, Config{Path: path})
	w.Record(fullSnapshot(t0))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Record(fullSnapshot(t0.Add(time.Second)))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, es, _ := readAll(t, path); len(es) != 1 {
		t.Fatalf("%d entries, want 1", len(es))
	}
}

func TestCreateRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no path":       {Interval: time.Second},
		"tiny max size": {Path: filepath.Join(dir, "a"), MaxSize: 100, Interval: time.Second},
		"negative keep": {Path: filepath.Join(dir, "b"), Keep: -1, Interval: time.Second},
		"no interval":   {Path: filepath.Join(dir, "c")},
		"no folder":     {Path: filepath.Join(dir, "none", "rec"), Interval: time.Second},
	} {
		if _, err := Create(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Size
		str  string
	}{
		{"64MB", 64 << 20, "64MB"},
		{"64mb", 64 << 20, "64MB"},
		{"512KiB", 512 << 10, "512KB"},
		{"1G", 1 << 30, "1GB"},
		{"1000", 1000, "1000"},
		{"4096B", 4096, "4KB"},
		{" 2 MB ", 2 << 20, "2MB"},
	} {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParseSize(%q) = %d (%s), %v; want %d (%s)", c.in, got, got, err, c.want, c.str)
		}
	}
	for _, bad := range []string{"", "MB", "-1MB", "1.5MB", "12XB", "99999999999GB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): no error", bad)
		}
	}
}

// BenchmarkRecord is what recording costs the tick: encoding the sample
// and queueing it. The disk is written on the recorder's own goroutine.
func BenchmarkRecord(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n, " consumers"), func(b *testing.B) {
			snap := fullSnapshot(t0)
			snap.Consumers = nil
			for i := range n {
				snap.Consumers = append(snap.Consumers, fullConsumer(fmt.Sprint("c-", i), t0))
			}
			w, err := Create(Config{Path: filepath.Join(b.TempDir(), "rec"), Interval: time.Second, Queue: 1 << 16})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.Record(snap)
			}
			b.StopTimer()
			w.Close()
		})
	}
}

// BenchmarkWriteSync is the alternative not taken: encoding, writing and
// flushing on the tick, which puts every disk stall in the tick.
func BenchmarkWriteSync(b *testing.B) {
	snap := fullSnapshot(t0)
	snap.Consumers = nil
	for i := range 100 {
		snap.Consumers = append(snap.Consumers, fullConsumer(fmt.Sprint("c-", i), t0))
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "rec"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var buf []byte
	for b.Loop() {
		buf = appendSnapshot(buf[:0], &snap)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// structLine is the tick line of s built as the line struct, for holding
// the hand-written encoder to what encoding/json writes.
func structLine(s *flow.Snapshot) []byte {
	l := line{T: nanos(s.At), US: s.UnobservedStreams, Sig: toSignalsLine(&s.Signals)}
	if s.Share != nil {
		l.Sh = &shareLine{L: s.Share.Listed, O: s.Share.Owned}
	}
	for _, st := range s.Streams {
		l.S = append(l.S, streamLine{
			N: st.Name, At: nanos(st.At), LS: st.LastSeq, M: st.Msgs,
			FS: st.FirstSeq, FT: nanos(st.FirstTime), LT: nanos(st.LastTime), B: st.Bytes,
			MM: st.MaxMsgs, MB: st.MaxBytes, MA: int64(st.MaxAge), MPS: st.MaxMsgsPerSubject, DN: st.DiscardNew,
		})
	}
	for _, c := range s.Consumers {
		cl := consumerLine{
			S: c.Key.Stream, C: c.Key.Consumer, G: c.Group,
			At: nanos(c.At), Cr: nanos(c.Created),
			P: c.NumPending, AP: c.NumAckPending, RD: c.NumRedelivered, W: c.NumWaiting,
			D: c.Delivered, DS: c.DeliveredStream, AF: c.AckFloor, AFS: c.AckFloorStream,
			LD: nanos(c.LastDelivery), LA: nanos(c.LastAck), L: c.Leader,
			Pu: c.Push, PB: c.PushBound, Pa: c.Paused, AN: c.AckNone, AW: int64(c.AckWait),
			MD: c.MaxDeliveries, Nk: c.Naks, Tm: c.Terminated,
			Fl: c.Filtered, OS: c.OldestSeq, OT: nanos(c.OldestTime),
		}
		if c.NodeID != c.Key.Consumer {
			id := c.NodeID
			cl.ID = &id
		}
		l.C = append(l.C, cl)
	}
	for _, k := range s.Unobserved {
		l.U = append(l.U, [2]string{k.Stream, k.Consumer})
	}
	return appendLine(nil, &l)
}

func TestEncoderWritesWhatJSONWrites(t *testing.T) {
	odd := fullSnapshot(t0)
	c := fullConsumer(`quote"back\slash`, t0)
	c.Group, c.NodeID, c.Leader = "zürich <&>", "tab\there", ""
	c.Push, c.NumPending = false, 0
	odd.Consumers = append(odd.Consumers, c)
	odd.UnobservedStreams = append(odd.UnobservedStreams, "\x01ctl")
	for name, s := range map[string]flow.Snapshot{
		"full":  fullSnapshot(t0),
		"odd":   odd,
		"empty": {At: t0},
	} {
		got, want := appendSnapshot(nil, &s), structLine(&s)
		if string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		e, err := decode(got[:len(got)-1])
		if err != nil || !reflect.DeepEqual(e.Snapshot, s) {
			t.Errorf("%s: decoded %+v, %v", name, e.Snapshot, err)
		}
	}
}

// BenchmarkEncode is the encoding alone, which is what Record spends on
// the tick when the machine has a core to spare for the writer.
func BenchmarkEncode(b *testing.B) {
	snap := fullSnapshot(t0)
	snap.Consumers = nil
	for i := range 100 {
		snap.Consumers = append(snap.Consumers, fullConsumer(fmt.Sprint("c-", i), t0))
	}
	var buf []byte
	for b.Loop() {
		buf = appendSnapshot(buf[:0], &snap)
	}
	b.SetBytes(int64(len(buf)))
}

// A disk that does not take the last ticks does not hold up the exit.
func TestCloseContextGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	w := &Writer{
		cfg: Config{Path: path, MaxSize: DefaultMaxSize, Interval: time.Second, Start: t0},
		log: slog.New(slog.DiscardHandler), queue: make(chan item, 2), done: make(chan struct{}),
	}
	// No writing goroutine: as if the disk hung on a write.
	w.Record(flow.Snapshot{At: t0})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.CloseContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(w.done)
}
