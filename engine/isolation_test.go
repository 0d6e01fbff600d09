package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestIsolationObserve(t *testing.T) {
	noMeta := fmt.Errorf("list streams: %w", &jetstream.APIError{Code: 503, ErrorCode: jsClusterNotAvailable, Description: "JetStream system temporarily unavailable"})
	timeout := errors.New("list streams: context deadline exceeded")
	type obs struct {
		at         time.Duration // since the start
		connected  bool
		servers    int
		err        error
		unobserved int
		want       isolationChange
		isolated   bool
	}
	const after = noMetaAfter
	for _, tc := range []struct {
		name string
		obs  []obs
	}{
		{"healthy cluster", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 3, nil, 0, isolationSame, false},
		}},
		{"pool shrinks to a minority while sampling fails: isolated at once, rejoined with the cluster", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 1, timeout, 0, isolationBegan, true},
			{2 * time.Second, true, 1, noMeta, 0, isolationSame, true},
			{3 * time.Second, true, 3, noMeta, 0, isolationSame, true}, // routes back, meta leader not yet
			{4 * time.Second, true, 3, nil, 1, isolationEnded, false},
		}},
		{"stale meta leader: the stream list answers, every stream unobserved", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 1, nil, 2, isolationBegan, true},
		}},
		{"a clean sample with a small pool is a smaller cluster, not isolation", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 1, nil, 0, isolationSame, false},
		}},
		{"one server of three restarting leaves a majority", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 2, timeout, 0, isolationSame, false},
			{2 * time.Second, true, 2, nil, 1, isolationSame, false},
		}},
		{"no meta leader briefly, as in an election: not isolated", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 3, noMeta, 0, isolationSame, false},
			{after, true, 3, noMeta, 0, isolationSame, false},
			{after + time.Second, true, 3, nil, 0, isolationSame, false},
			{after + 2*time.Second, true, 3, noMeta, 0, isolationSame, false}, // a new run starts afresh
		}},
		{"no meta leader for longer than an election, URLs given explicitly", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 3, noMeta, 0, isolationSame, false},
			{time.Second + after, true, 3, noMeta, 0, isolationBegan, true},
			{2*time.Second + after, true, 3, nil, 0, isolationEnded, false},
		}},
		{"timeouts, then no meta leader: the run counts from the first failure", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 3, timeout, 0, isolationSame, false},
			{5 * time.Second, true, 3, noMeta, 0, isolationSame, false},
			{time.Second + after, true, 3, noMeta, 0, isolationBegan, true},
		}},
		{"long timeouts (streams out of reach), then an election's no meta leader: not isolation", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, true, 3, timeout, 0, isolationSame, false},
			{100 * time.Second, true, 3, noMeta, 0, isolationSame, false},
			{100*time.Second + noMetaRun - time.Second, true, 3, noMeta, 0, isolationSame, false},
			{100*time.Second + noMetaRun, true, 3, nil, 0, isolationSame, false},
		}},
		{"long timeouts, then no meta leader for longer than an election: isolated", []obs{
			{time.Second, true, 3, timeout, 0, isolationSame, false},
			{100 * time.Second, true, 3, noMeta, 0, isolationSame, false},
			{100*time.Second + noMetaRun, true, 3, noMeta, 0, isolationBegan, true},
		}},
		{"timeouts alone are a slow server, not isolation", []obs{
			{0, true, 3, timeout, 0, isolationSame, false},
			{2 * after, true, 3, timeout, 0, isolationSame, false},
		}},
		{"a failover starts the run afresh", []obs{
			{0, true, 3, noMeta, 0, isolationSame, false},
			{time.Second, false, 3, timeout, 0, isolationSame, false},
			{2 * time.Second, true, 3, noMeta, 0, isolationSame, false},
			{time.Second + after, true, 3, noMeta, 0, isolationSame, false},
			{2*time.Second + after, true, 3, noMeta, 0, isolationBegan, true},
		}},
		{"a lost connection is blindness, and leaves the isolation as it was", []obs{
			{0, true, 3, nil, 0, isolationSame, false},
			{time.Second, false, 3, timeout, 0, isolationSame, false},
			{2 * time.Second, true, 1, timeout, 0, isolationBegan, true},
			{3 * time.Second, false, 1, timeout, 0, isolationSame, true},
			{4 * time.Second, true, 3, nil, 0, isolationEnded, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &isolation{noMetaAfter: after}
			t0 := time.Unix(1_700_000_000, 0)
			for i, o := range tc.obs {
				got := d.observe(t0.Add(o.at), o.connected, o.servers, o.err, o.unobserved)
				if got != o.want {
					t.Fatalf("observation %d: change %d, want %d", i, got, o.want)
				}
				if v := d.current(); (v != nil) != o.isolated {
					t.Fatalf("observation %d: isolated %v, want %v", i, v != nil, o.isolated)
				} else if v != nil && (v.Reason == "" || v.ServersKnown != 3 || v.ServersSeen != o.servers) {
					t.Fatalf("observation %d: view %+v", i, *v)
				}
			}
		})
	}
}

func TestIsolationSinceIsWhenTheMetaLeaderWasLost(t *testing.T) {
	d := &isolation{noMetaAfter: noMetaAfter}
	noMeta := &jetstream.APIError{ErrorCode: jsClusterNotAvailable}
	t0 := time.Unix(1_700_000_000, 0)
	d.observe(t0, true, 3, noMeta, 0)
	if d.observe(t0.Add(noMetaAfter), true, 3, noMeta, 0) != isolationBegan {
		t.Fatalf("not isolated after %v without a meta leader", noMetaAfter)
	}
	if v := d.current(); !v.Since.Equal(t0) {
		t.Fatalf("since %v, want %v", v.Since, t0)
	}
}
