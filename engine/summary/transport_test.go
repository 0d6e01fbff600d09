package summary

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	s := testutil.RunServer(t)
	js := testutil.JetStream(t, testutil.Connect(t, s.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStream(ctx, js, Config{MaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return js
}

func publish(t *testing.T, js jetstream.JetStream, p *Part, maxChunk int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := NewPublisher(js, p.Member, maxChunk).Publish(ctx, p); err != nil {
		t.Fatal(err)
	}
}

func startCollector(t *testing.T, js jetstream.JetStream, cfg CollectorConfig) *Collector {
	t.Helper()
	c := NewCollector(js, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// latestIs waits until Latest returns exactly want.
func latestIs(t *testing.T, c *Collector, want ...*Part) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, func() error {
		got := c.Latest(time.Now())
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("Latest has %d parts %v, want %d %v", len(got), members(got), len(want), members(want))
		}
		return nil
	})
}

func members(ps []*Part) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Member)
	}
	return out
}

// TestCollectorTwoMembers: two members' parts of 5,000 nodes, each in
// several chunks, arrive whole; the collector's own part is skipped.
func TestCollectorTwoMembers(t *testing.T) {
	js := setup(t)
	c := startCollector(t, js, CollectorConfig{Self: "leader", Stale: time.Minute})
	const maxChunk = 64 << 10
	self := testPart("leader", 1, 100)
	a, b := testPart("a", 3, 5000), testPart("b.with dots", 4, 5000)
	if chunks, _ := Encode(a, maxChunk); len(chunks) < 4 {
		t.Fatalf("a part of 5,000 nodes took %d chunks; the test wants several", len(chunks))
	}
	// Self first: the consumer delivers in order, so once the others are
	// in, self's part has been handled too.
	publish(t, js, self, maxChunk)
	publish(t, js, b, maxChunk)
	publish(t, js, a, maxChunk)
	latestIs(t, c, a, b)
	if n := c.Errors(); n != 0 {
		t.Fatalf("%d errors", n)
	}
	// A newer part replaces the older.
	a2 := testPart("a", 5, 10)
	publish(t, js, a2, maxChunk)
	latestIs(t, c, a2, b)
}

// TestCollectorStale: a member whose part is older than Stale is left out.
func TestCollectorStale(t *testing.T) {
	js := setup(t)
	const stale = 10 * time.Second
	c := startCollector(t, js, CollectorConfig{Self: "leader", Stale: stale})
	a := testPart("a", 1, 10)
	publish(t, js, a, 0)
	latestIs(t, c, a)
	if got := c.Latest(time.Now().Add(stale + time.Millisecond)); len(got) != 0 {
		t.Fatalf("Latest after Stale = %v, want none", members(got))
	}
	// Dropped for good: a later call at the present does not bring it back.
	if got := c.Latest(time.Now()); len(got) != 0 {
		t.Fatalf("Latest = %v after the member went stale", members(got))
	}
}

// TestCollectorReplayOnStart: a collector started after the members
// published still has their latest parts at once.
func TestCollectorReplayOnStart(t *testing.T) {
	js := setup(t)
	a1, a2, b := testPart("a", 1, 2000), testPart("a", 2, 2000), testPart("b", 9, 2000)
	publish(t, js, a1, 16<<10)
	publish(t, js, b, 16<<10)
	publish(t, js, a2, 16<<10)
	c := startCollector(t, js, CollectorConfig{Self: "leader", Stale: time.Minute})
	latestIs(t, c, a2, b)
}

// TestCollectorGarbage: chunks that do not decode, or come on another
// member's subject, are counted and logged once per member, and the
// collector goes on.
func TestCollectorGarbage(t *testing.T) {
	js := setup(t)
	var logs testutil.LogBuffer
	c := startCollector(t, js, CollectorConfig{Self: "leader", Stale: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, data := range [][]byte{nil, []byte("garbage"), {version, 0xff}} {
		if _, err := js.Publish(ctx, SubjectPrefix+"junk", data); err != nil {
			t.Fatal(err)
		}
	}
	forged, err := Encode(testPart("a", 1, 3), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, Subject("b"), forged[0]); err != nil {
		t.Fatal(err)
	}
	a := testPart("a", 2, 500)
	publish(t, js, a, 4096)
	latestIs(t, c, a)
	if n := c.Errors(); n != 4 {
		t.Fatalf("Errors = %d, want 4", n)
	}
	if recs := logs.Records(t, slog.LevelWarn); len(recs) != 2 {
		t.Fatalf("%d warnings, want one per subject (junk, b): %v", len(recs), recs)
	}
}

// TestEnsureStreamKeepsOther: a stream made with other settings that the
// update cannot change is used as it is.
func TestEnsureStreamKeepsOther(t *testing.T) {
	s := testutil.RunServer(t)
	js := testutil.JetStream(t, testutil.Connect(t, s.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: Stream, Subjects: []string{SubjectPrefix + ">"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStream(ctx, js, Config{MaxAge: time.Minute}); err != nil {
		t.Fatalf("EnsureStream on a file stream: %v", err)
	}
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.Storage != jetstream.FileStorage {
		t.Fatalf("storage changed to %v", st.CachedInfo().Config.Storage)
	}
	// A fresh server gets the stream as configured.
	js2 := setup(t)
	st, err = js2.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != time.Minute || cfg.MaxBytes != MaxBytes || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("stream config %+v", cfg)
	}
}
