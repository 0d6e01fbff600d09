package engine_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// userURL is srv's client URL logged in as one of
// testutil.WithSystemAccount's users. Clients keep the user for the
// servers they learn of, so a client given one URL still fails over.
func userURL(srv *server.Server, user string) string {
	u, _ := url.Parse(srv.ClientURL())
	u.User = url.UserPassword(user, user)
	return u.String()
}

// A server of three announces its shutdown (an operator stops it). Group
// eu's clients were all connected to it: they stop together, reconnect to
// the other servers and carry on. With system access the engine hears the
// announcement (system.serversAnnouncedDown), and reports nothing of the
// failover: no node.down of any kind, no system.down.
//
// These clients reconnect within a second, faster than a stall, so the
// flow alone would not be fooled here either: this test proves the signal
// reaches the rules on a real cluster. That the rules then hold a slower
// failover's stall is rulesets/tests/server-loss.yaml's to show, which
// reads the same stall as a partition without the announcement.
func TestScenarioServerShutdownIsNoPartition(t *testing.T) {
	t.Parallel()
	srvs := testutil.RunCluster(t, 3, testutil.WithSystemAccount)
	var all []string
	for _, s := range srvs {
		all = append(all, userURL(s, testutil.AppUser))
	}
	w := newWorldAt(t, srvs[0], userURL(srvs[0], testutil.AppUser), jetstream.StreamConfig{
		Name: stream, Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.FileStorage,
	})
	leaving := userURL(srvs[2], testutil.AppUser)
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		w.addNodeVia(leaving, id, "eu")
	}
	for _, id := range []string{"us-1", "us-2", "us-3"} {
		w.addNodeVia(userURL(srvs[id[3]-'1'], testutil.AppUser), id, "us")
	}
	testutil.StartPublisher(t, userURL(srvs[0], testutil.AppUser), "orders", 20)

	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	nc := testutil.Connect(t, strings.Join(all, ","), opts...)
	sys := testutil.Connect(t, userURL(srvs[0], testutil.SysUser), opts...)
	w.startEngineConn(nc, nil, engine.Config{System: sys})
	w.quietFor(10, "healthy cluster")

	srvs[2].Shutdown()
	testutil.Eventually(t, 10*time.Second, func() bool {
		sys := w.eng.Status().System
		return sys.ServerSignals && sys.ServersAnnouncedDown == 1 && sys.ServersDown == 1 && sys.RoutesLost == 0
	}, "the engine heard s2 announce its shutdown")
	// eu's clients reconnect elsewhere and ack again.
	for _, id := range []string{"eu-1", "eu-2", "eu-3"} {
		wk := w.worker(id)
		acked := wk.Acks()
		testutil.Eventually(t, 30*time.Second, func() bool { return wk.Acks() > acked+20 }, "%s acks again after the failover", id)
	}
	w.ticks(10)
	for _, e := range w.all() {
		switch e.Type {
		case events.TypeNodeDown, events.TypeSystemDown:
			t.Fatalf("a server's announced shutdown raised %s: %s", e.Type, summary(w.all()))
		}
	}
	st := w.eng.Status()
	if len(st.Nodes) != 6 {
		t.Fatalf("after the shutdown the engine sees %d nodes, want 6", len(st.Nodes))
	}
}
