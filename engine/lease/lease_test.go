package lease_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/lease"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

const period = time.Second

// engine is one lease taking part, on a connection of its own.
type engine struct {
	l      *lease.Lease
	cancel context.CancelFunc
	done   chan struct{}
	close  func()
}

func start(t *testing.T, url, id string) *engine {
	t.Helper()
	nc := testutil.Connect(t, url)
	l := lease.New(testutil.JetStream(t, nc), lease.Config{Identity: id, Period: period})
	ctx, cancel := context.WithCancel(context.Background())
	e := &engine{l: l, cancel: cancel, done: make(chan struct{}), close: nc.Close}
	go func() {
		defer close(e.done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-e.done })
	return e
}

// watchLeaders samples every engine's IsLeader until stop, and fails if two
// ever say yes at once.
func watchLeaders(t *testing.T, engines ...*engine) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		every := time.NewTicker(time.Millisecond) // a sample of the roles each millisecond
		defer every.Stop()
		for {
			select {
			case <-quit:
				return
			case <-every.C:
			}
			n := 0
			for _, e := range engines {
				if e.l.IsLeader() {
					n++
				}
			}
			if n > 1 {
				t.Errorf("%d engines lead at once", n)
				return
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

func leaders(engines ...*engine) (n int, which *engine) {
	for _, e := range engines {
		if e.l.IsLeader() {
			n++
			which = e
		}
	}
	return n, which
}

func TestOneLeaderAndTakeover(t *testing.T) {
	srv := testutil.RunServer(t)
	a, b, c := start(t, srv.ClientURL(), "a"), start(t, srv.ClientURL(), "b"), start(t, srv.ClientURL(), "c")
	all := []*engine{a, b, c}
	stop := watchLeaders(t, all...)
	defer stop()

	var first *engine
	testutil.Eventually(t, 10*time.Second, func() bool {
		var n int
		n, first = leaders(all...)
		return n == 1
	}, "one leader")
	st := first.l.Status()
	for _, e := range all {
		testutil.Eventually(t, 5*time.Second, func() bool {
			s := e.l.Status()
			return s.Holder == st.Holder && s.Term == st.Term && s.Period == period
		}, "every engine names the leader and its term")
	}

	// A leader that stops gives the lease up: another takes it at its next
	// step, well within a period.
	stopped := time.Now()
	first.cancel()
	<-first.done
	var second *engine
	testutil.Eventually(t, 5*time.Second, func() bool {
		var n int
		n, second = leaders(all...)
		return n == 1
	}, "a new leader after a clean stop")
	if d := time.Since(stopped); d > period {
		t.Errorf("takeover after a clean stop took %v, want within a period (%v)", d, period)
	}
	if s := second.l.Status(); s.Term <= st.Term || s.Holder == st.Holder {
		t.Fatalf("new tenure %+v after %+v: the term must rise and the holder change", s, st)
	}

	// A leader whose connection is cut cannot renew: it stops leading on
	// its own before its lease runs out, and only then does another take
	// over (watchLeaders checks they never overlap), within two periods.
	cut := time.Now()
	second.close()
	testutil.Eventually(t, 5*time.Second, func() bool { return !second.l.IsLeader() }, "the cut leader steps down")
	if d := time.Since(cut); d > period {
		t.Errorf("the cut leader stepped down after %v, later than its period (%v)", d, period)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		n, third := leaders(all...)
		return n == 1 && third != second
	}, "a leader on the other side of the cut")
	if d := time.Since(cut); d > 2*period+period/3 {
		t.Errorf("takeover after a cut took %v, want about two periods (%v) at most", d, 2*period)
	}
}

func TestBucketWithoutTTLIsRefused(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	js := testutil.JetStream(t, nc)
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: lease.Bucket}); err != nil {
		t.Fatal(err)
	}
	var logs testutil.LogBuffer
	l := lease.New(js, lease.Config{Identity: "a", Period: period, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.Run(ctx)
	if l.IsLeader() {
		t.Fatal("led through a bucket without TTL")
	}
	if !strings.Contains(logs.String(), "has no TTL") {
		t.Fatalf("log does not say why: %s", logs.String())
	}
}

func TestExistingBucketSetsThePeriod(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	js := testutil.JetStream(t, nc)
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: lease.Bucket, TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	e := start(t, srv.ClientURL(), "a")
	testutil.Eventually(t, 5*time.Second, func() bool { return e.l.IsLeader() }, "leads")
	if p := e.l.Status().Period; p != 2*time.Second {
		t.Fatalf("period %v, want the bucket's 2s", p)
	}
}
