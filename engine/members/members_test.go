package members_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

const period = time.Second

// member is one Members taking part, on a connection of its own.
type member struct {
	m      *members.Members
	cancel context.CancelFunc
	done   chan struct{}
	close  func()
}

func start(t *testing.T, url, id string) *member {
	t.Helper()
	nc := testutil.Connect(t, url)
	m := members.New(testutil.JetStream(t, nc), members.Config{Identity: id, Period: period})
	ctx, cancel := context.WithCancel(context.Background())
	e := &member{m: m, cancel: cancel, done: make(chan struct{}), close: nc.Close}
	go func() {
		defer close(e.done)
		if err := m.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-e.done })
	return e
}

// agree reports whether every member is ready and sees exactly want live.
func agree(want []string, ms ...*member) bool {
	for _, e := range ms {
		if !e.m.Ready() || !slices.Equal(e.m.Live(), want) {
			return false
		}
	}
	return true
}

func TestMembersShareAndReassign(t *testing.T) {
	srv := testutil.RunServer(t)
	// One identity is no valid KV key: it is listed under an encoding.
	ids := []string{"engine-a", "engine-b", "host c:9466"}
	a, b, c := start(t, srv.ClientURL(), ids[0]), start(t, srv.ClientURL(), ids[1]), start(t, srv.ClientURL(), ids[2])
	all := []*member{a, b, c}
	testutil.Eventually(t, 10*time.Second, func() bool { return agree(ids, all...) }, "all ready and agreeing on %q", ids)

	// Every stream has exactly one owner by each member's view.
	names := make([]string, 3000)
	for i := range names {
		names[i] = fmt.Sprintf("STREAM_%d", i)
	}
	owned := map[*member]int{}
	for _, s := range names {
		owner := a.m.Owner(s)
		n := 0
		for _, e := range all {
			if o := e.m.Owner(s); o != owner {
				t.Fatalf("%s: owner %q by one view, %q by another", s, owner, o)
			}
			if e.m.Owns(s) {
				n++
				owned[e]++
			}
		}
		if n != 1 {
			t.Fatalf("%s is owned by %d members, want 1", s, n)
		}
	}
	for _, e := range all {
		if owned[e] == 0 {
			t.Errorf("%s owns none of %d streams", e.m.Status().Self, len(names))
		}
		if st := e.m.Status(); st.Heartbeats == 0 || st.Period != period || !st.Ready {
			t.Errorf("status %+v: want heartbeats, the period and ready", st)
		}
	}

	// A clean stop deletes the key: the others drop it at once. Had they
	// waited for it to age out instead, that would take at least two thirds
	// of a period (a period after its last put, put at most a third of a
	// period before the stop), so half a period tells the two apart.
	changesBefore := a.m.Status().Changes
	stopped := time.Now()
	c.cancel()
	<-c.done
	testutil.Eventually(t, 3*period, func() bool { return agree(ids[:2], a, b) }, "c gone from the others after a clean stop")
	d := time.Since(stopped)
	t.Logf("clean stop seen by the others after %v", d)
	if d > period/2 {
		t.Errorf("a cleanly stopped member left the others' view after %v, want at once (under %v)", d, period/2)
	}
	if c.m.Ready() || c.m.Owns(names[0]) || len(c.m.Live()) != 0 {
		t.Error("a stopped member still claims streams")
	}
	if st := a.m.Status(); st.Changes <= changesBefore || st.Leaves == 0 {
		t.Errorf("status %+v: the leave is not counted", st)
	}
	for _, s := range names {
		if (a.m.Owns(s) == b.m.Owns(s)) || a.m.Owner(s) != members.Rendezvous(s, ids[:2]) {
			t.Fatalf("%s: after the stop a owns %v, b %v; want exactly one, by rendezvous", s, a.m.Owns(s), b.m.Owns(s))
		}
	}

	// A member whose connection is cut says nothing: the others drop it
	// one period after its last put arrived, that put at most a third of a
	// period before the cut, and it drops itself as early.
	cut := time.Now()
	b.close()
	testutil.Eventually(t, 3*period, func() bool { return agree(ids[:1], a) }, "b gone from a's view after its connection closed")
	d = time.Since(cut)
	t.Logf("cut member dropped by the other after %v", d)
	if d < period/2 {
		t.Errorf("the cut member was dropped after %v, before its last put could have aged (about %v)", d, period)
	}
	testutil.Eventually(t, 3*period, func() bool { return !slices.Contains(b.m.Live(), ids[1]) }, "the cut member drops itself")
	t.Logf("cut member dropped itself after %v", time.Since(cut))
	for _, s := range names[:100] {
		if b.m.Owns(s) {
			t.Fatalf("the cut member still owns %s", s)
		}
		if !a.m.Owns(s) {
			t.Fatalf("the last member does not own %s", s)
		}
	}
}

// TestNotOwnedBeforeReady: a member claims no stream before its first full
// read of the bucket, even while it is already live itself.
func TestNotOwnedBeforeReady(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	m := members.New(testutil.JetStream(t, nc), members.Config{Identity: "a", Period: period})
	if m.Ready() || m.Owns("S") || m.Owner("S") != "" || len(m.Live()) != 0 {
		t.Fatal("a member not yet run claims something")
	}

	var mu sync.Mutex
	var changes [][]string
	m2 := members.New(testutil.JetStream(t, nc), members.Config{Identity: "a", Period: period, OnChange: func(live []string) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, live)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m2.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Sample as the sampler does, every millisecond, until ready: Owns
	// never says yes before. (Owns and Ready each read one snapshot, and
	// Ready never turns back while running, so Ready is asked after Owns.)
	every := time.NewTicker(time.Millisecond)
	defer every.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !m2.Ready() {
		if m2.Owns("S") && !m2.Ready() {
			t.Fatal("Owns is true before Ready")
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		<-every.C
	}
	if !m2.Owns("S") || m2.Owner("S") != "a" {
		t.Fatal("a lone ready member does not own every stream")
	}
	// OnChange runs just after the view is published.
	testutil.Eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(changes) > 0 && slices.Equal(changes[len(changes)-1], []string{"a"})
	}, "OnChange reports the live set [a]")
}

func TestExistingBucketSetsThePeriod(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	js := testutil.JetStream(t, nc)
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: members.Bucket, TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	e := start(t, srv.ClientURL(), "a")
	testutil.Eventually(t, 5*time.Second, func() bool { return e.m.Ready() && e.m.Owns("S") }, "ready")
	if p := e.m.Status().Period; p != 2*time.Second {
		t.Fatalf("period %v, want the bucket's 2s", p)
	}
}

func TestBucketWithoutTTLIsRefused(t *testing.T) {
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	js := testutil.JetStream(t, nc)
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: members.Bucket}); err != nil {
		t.Fatal(err)
	}
	var logs testutil.LogBuffer
	m := members.New(js, members.Config{Identity: "a", Period: period, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.Run(ctx)
	if m.Ready() || m.Owns("S") {
		t.Fatal("took part through a bucket without TTL")
	}
	if !strings.Contains(logs.String(), "has no TTL") {
		t.Fatalf("log does not say why: %s", logs.String())
	}
}

// TestSurvivesServerRestart: while the server is down every member drops
// out of every view, itself included; once it is back the watches are
// made anew and the members agree again.
func TestSurvivesServerRestart(t *testing.T) {
	opts := testutil.ServerOptions(t)
	srv := testutil.StartServer(t, opts)
	ids := []string{"a", "b"}
	a, b := start(t, srv.ClientURL(), "a"), start(t, srv.ClientURL(), "b")
	testutil.Eventually(t, 10*time.Second, func() bool { return agree(ids, a, b) }, "agree before the restart")

	opts = opts.Clone()
	opts.Port = srv.Addr().(*net.TCPAddr).Port
	srv.Shutdown()
	srv.WaitForShutdown()
	testutil.Eventually(t, 3*period, func() bool { return len(a.m.Live()) == 0 && len(b.m.Live()) == 0 }, "nobody live while the server is down")
	if a.m.Owns("S") || b.m.Owns("S") {
		t.Fatal("a member owns a stream while the server is down")
	}
	restarted := time.Now()
	testutil.StartServer(t, opts)
	// Stop the members before this server (cleanups run last first), so
	// they leave while it is up instead of waiting on it going down.
	t.Cleanup(func() {
		for _, e := range []*member{a, b} {
			e.cancel()
			<-e.done
		}
	})
	// The clients reconnect within their reconnect wait (2s by default),
	// then the watches are made anew within a period or two.
	testutil.Eventually(t, 15*time.Second, func() bool { return agree(ids, a, b) }, "agree again after the restart")
	t.Logf("agree again %v after the restart", time.Since(restarted))
}
