package sampler_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestShareSamplesOnlyOwnedStreams: engines sharing the streams each read
// only their own, on both sampling paths; between them they see every node
// once, and each lists every stream's name. A stream that changes hands
// moves at the next tick.
func TestShareSamplesOnlyOwnedStreams(t *testing.T) {
	srv := testutil.RunServer(t, testutil.WithSystemAccount)
	url := srv.ClientURL()
	nc := testutil.Connect(t, url, testutil.As(testutil.AppUser))
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := []string{"A", "B", "C", "D", "E"}
	for _, name := range names {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{"w1", "w2"} {
			if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: c, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Fatal(err)
			}
		}
	}
	lists := map[string]*atomic.Int64{}
	for _, n := range names {
		lists[n] = &atomic.Int64{}
	}
	mon := testutil.Connect(t, url, testutil.As(testutil.AppUser))
	if _, err := mon.Subscribe("$JS.API.CONSUMER.LIST.*", func(m *nats.Msg) {
		lists[strings.TrimPrefix(m.Subject, "$JS.API.CONSUMER.LIST.")].Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	if err := mon.Flush(); err != nil {
		t.Fatal(err)
	}

	var first atomic.Value // the streams engine 0 owns; engine 1 owns the rest
	first.Store([]string{"A", "B"})
	owns := func(part int) func(string) bool {
		return func(stream string) bool {
			return slices.Contains(first.Load().([]string), stream) == (part == 0)
		}
	}
	for _, path := range []string{"listing", "system access"} {
		t.Run(path, func(t *testing.T) {
			first.Store([]string{"A", "B"})
			var ss [2]*sampler.Sampler
			for i := range ss {
				cfg := sampler.Config{Owns: owns(i), Logger: slog.New(slog.DiscardHandler)}
				if path == "system access" {
					cfg.System = testutil.Connect(t, url, testutil.As(testutil.SysUser))
				}
				ss[i] = sampler.New(testutil.Connect(t, url, testutil.As(testutil.AppUser)), cfg)
				if err := ss[i].Start(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(ss[i].Stop)
			}
			for _, n := range names {
				lists[n].Store(0)
			}
			check := func(own0 []string) {
				t.Helper()
				seen := map[string]int{}
				for i, s := range ss {
					snap, err := s.Sample(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if snap.Share == nil || !slices.Equal(snap.Share.Listed, names) {
						t.Fatalf("engine %d: share %+v, want every stream listed", i, snap.Share)
					}
					var want []string
					for _, n := range names {
						if slices.Contains(own0, n) == (i == 0) {
							want = append(want, n)
						}
					}
					if !slices.Equal(snap.Share.Owned, want) {
						t.Fatalf("engine %d owns %v, want %v", i, snap.Share.Owned, want)
					}
					for _, c := range snap.Consumers {
						if !slices.Contains(want, c.Key.Stream) {
							t.Fatalf("engine %d read %s, a stream it does not own", i, c.Key)
						}
						seen[c.Key.String()]++
					}
					// Every stream's own sample, for the system's publish
					// rate; only the owned streams' consumers.
					var sampled []string
					for _, st := range snap.Streams {
						sampled = append(sampled, st.Name)
					}
					if !slices.Equal(sampled, names) {
						t.Fatalf("engine %d sampled streams %v, want all of %v", i, sampled, names)
					}
				}
				if len(seen) != 2*len(names) {
					t.Fatalf("the two engines saw %d nodes between them, want %d: %v", len(seen), 2*len(names), seen)
				}
				for k, n := range seen {
					if n != 1 {
						t.Fatalf("node %s seen by %d engines", k, n)
					}
				}
			}
			check([]string{"A", "B"})
			first.Store([]string{"C", "D", "E"})
			check([]string{"C", "D", "E"})
			if path == "listing" {
				// Each stream was listed once per tick, by its owner.
				if err := mon.Flush(); err != nil {
					t.Fatal(err)
				}
				testutil.Eventually(t, 10*time.Second, func() bool {
					for _, n := range names {
						if lists[n].Load() < 2 {
							return false
						}
					}
					return true
				}, "every stream listed on both ticks")
				for _, n := range names {
					if got := lists[n].Load(); got != 2 {
						t.Errorf("CONSUMER.LIST %s: %d requests over two ticks, want 2 (its owner's)", n, got)
					}
				}
			}
		})
	}
}

// TestNoShareWithoutOwns: an engine sampling everything says nothing of
// shares.
func TestNoShareWithoutOwns(t *testing.T) {
	e := newEnv(t, sampler.Config{})
	e.stream(jetstream.StreamConfig{Name: "S", Storage: jetstream.MemoryStorage})
	if snap := e.sample(); snap.Share != nil {
		t.Fatalf("share %+v without Owns", snap.Share)
	}
}
