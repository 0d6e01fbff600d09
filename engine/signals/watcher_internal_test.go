package signals

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// clock is a settable time for the watcher.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClockWatcher() (*Watcher, *clock) {
	c := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	return New(nil, nil, Config{Now: c.now}), c
}

func statszMsg(name string, routes ...string) []byte {
	var rs []string
	for _, r := range routes {
		rs = append(rs, fmt.Sprintf(`{"rid":1,"name":%q,"sent":{},"received":{},"pending":0}`, r))
	}
	return fmt.Appendf(nil, `{"server":{"name":%q,"id":"ID%s","ver":"2.15.2","seq":1},"statsz":{"start":"2026-12-03T09:00:00Z","routes":[%s]}}`, name, name, strings.Join(rs, ","))
}

func TestWatcherLostAfterThreeHeartbeats(t *testing.T) {
	w, c := newClockWatcher()
	// Heartbeats that double from 250ms to 8s, as a starting server sends
	// them, then settle at 10s: none is a loss.
	for _, gap := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second} {
		c.add(gap)
		w.statsz(statszMsg("s1"))
		if sig := w.Read(); len(sig.Down) != 0 {
			t.Fatalf("after a %v gap: down %v", gap, sig.Down)
		}
	}
	c.add(30 * time.Second) // three missed heartbeats, not yet more
	if sig := w.Read(); len(sig.Down) != 0 {
		t.Fatalf("at three heartbeats: down %v", sig.Down)
	}
	c.add(time.Second)
	sig := w.Read()
	if len(sig.Down) != 1 || sig.Down[0].Name != "s1" || sig.Down[0].Announced || !sig.Down[0].Since.Equal(c.t) || !sig.Down[0].LastHeard.Equal(c.t.Add(-31*time.Second)) {
		t.Fatalf("past three heartbeats: down %+v", sig.Down)
	}
	lost := c.t
	c.add(time.Second)
	if sig := w.Read(); len(sig.Down) != 1 || !sig.Down[0].Since.Equal(lost) {
		t.Fatalf("a second later, the loss keeps its time: %+v", sig.Down)
	}
	w.statsz(statszMsg("s1")) // back (restarted: same name)
	if sig := w.Read(); len(sig.Down) != 0 {
		t.Fatalf("heard again: down %v", sig.Down)
	}
	// A server whose heartbeats come slower than 10s (loaded) is judged at
	// its own spacing.
	c.add(20 * time.Second)
	w.statsz(statszMsg("s1"))
	c.add(59 * time.Second)
	if sig := w.Read(); len(sig.Down) != 0 {
		t.Fatalf("within three of its own 20s heartbeats: down %v", sig.Down)
	}
	c.add(2 * time.Second)
	if sig := w.Read(); len(sig.Down) != 1 {
		t.Fatalf("past three of its own 20s heartbeats: down %v", sig.Down)
	}
}

func TestWatcherAnnouncedShutdown(t *testing.T) {
	w, c := newClockWatcher()
	w.statsz(statszMsg("s1", "s2"))
	c.add(time.Second)
	w.announce("$SYS.SERVER.IDs1.SHUTDOWN", []byte(`{"server":{"name":"s1","id":"IDs1"},"reason":"Server Shutdown"}`))
	sig := w.Read()
	if len(sig.Down) != 1 || !sig.Down[0].Announced || !sig.Down[0].Since.Equal(c.t) {
		t.Fatalf("announced: %+v", sig.Down)
	}
	// A bare server info, as older servers sent it, counts too.
	w.announce("$SYS.SERVER.IDs2.LAMEDUCK", []byte(`{"name":"s2","id":"IDs2"}`))
	if sig := w.Read(); len(sig.Down) != 2 {
		t.Fatalf("lame duck: %+v", sig.Down)
	}
	// Garbage is ignored.
	for _, bad := range []string{``, `{`, `[]`, `{"server":{}}`, `null`} {
		w.announce("$SYS.SERVER.X.SHUTDOWN", []byte(bad))
	}
	if sig := w.Read(); len(sig.Down) != 2 {
		t.Fatalf("after garbage: %+v", sig.Down)
	}
	c.add(Retain + time.Second)
	if sig := w.Read(); len(sig.Down) != 0 {
		t.Fatalf("forgotten after Retain: %+v", sig.Down)
	}
}

func TestWatcherRoutesLost(t *testing.T) {
	w, c := newClockWatcher()
	w.statsz(statszMsg("s1", "s2", "s3"))
	w.statsz(statszMsg("s2", "s1", "s3"))
	w.statsz(statszMsg("s3", "s1", "s2"))
	if sig := w.Read(); sig.RoutesLost != 0 {
		t.Fatalf("all routed: lost %d", sig.RoutesLost)
	}
	// s3 cut from both: each side reports the routes it lost.
	c.add(time.Second)
	w.statsz(statszMsg("s1", "s2"))
	w.statsz(statszMsg("s2", "s1"))
	w.statsz(statszMsg("s3"))
	if sig := w.Read(); sig.RoutesLost != 4 {
		t.Fatalf("s3 cut: lost %d, want 4", sig.RoutesLost)
	}
	// s3 announced down: routes to a server that is down are not lost
	// routes, and its own are not counted.
	w.announce("$SYS.SERVER.IDs3.SHUTDOWN", []byte(`{"server":{"name":"s3"}}`))
	if sig := w.Read(); sig.RoutesLost != 0 {
		t.Fatalf("s3 down: lost %d, want 0", sig.RoutesLost)
	}
	// Pooled routes name the same peer several times: counted once.
	w.statsz(statszMsg("s3", "s1", "s1", "s2"))
	w.statsz(statszMsg("s1", "s2", "s3", "s3"))
	w.statsz(statszMsg("s2", "s1", "s3"))
	if sig := w.Read(); sig.RoutesLost != 0 || len(sig.Down) != 0 {
		t.Fatalf("healed: lost %d, down %v", sig.RoutesLost, sig.Down)
	}
}

func TestWatcherElections(t *testing.T) {
	w, c := newClockWatcher()
	w.election("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ORDERS.w1", []byte(`{"type":"io.nats.jetstream.advisory.v1.consumer_leader_elected","stream":"ORDERS","consumer":"w1","leader":"s2"}`))
	c.add(time.Second)
	w.election("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ALPHA.w9", []byte(`{"stream":"ALPHA","consumer":"w9","leader":"s1"}`))
	for _, bad := range []struct{ subj, data string }{
		{"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ORDERS", `{}`},
		{"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ORDERS.w1.x", `{}`},
		{"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ORDERS.w2", `{"stream":"OTHER"}`},
		{"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.ORDERS.w3", `not json`},
	} {
		w.election(bad.subj, []byte(bad.data))
	}
	sig := w.Read()
	want := []flow.Election{
		{Key: flow.NodeKey{Stream: "ALPHA", Consumer: "w9"}, Leader: "s1", At: c.t},
		{Key: flow.NodeKey{Stream: "ORDERS", Consumer: "w1"}, Leader: "s2", At: c.t.Add(-time.Second)},
	}
	if fmt.Sprint(sig.Elected) != fmt.Sprint(want) {
		t.Fatalf("elected %+v, want %+v", sig.Elected, want)
	}
	if sig.Servers {
		t.Fatal("no system connection, yet Servers is true")
	}
	c.add(Retain)
	if sig := w.Read(); len(sig.Elected) != 1 {
		t.Fatalf("after Retain, want the later election only: %+v", sig.Elected)
	}
}

func TestWatcherIgnoresMalformedStatsz(t *testing.T) {
	w, _ := newClockWatcher()
	for _, bad := range []string{``, `{`, `{"server":{}}`, `{"server":{"name":"s1"},"statsz":{"routes":"x"}}`} {
		w.statsz([]byte(bad))
	}
	if len(w.servers) != 0 {
		t.Fatalf("malformed statistics made servers: %v", w.servers)
	}
	// A ping reply carries the statistics under "data".
	w.statsz([]byte(`{"server":{"name":"s1","id":"A"},"data":{"routes":[{"name":"s2"}]}}`))
	if s := w.servers["s1"]; s == nil || !s.current["s2"] {
		t.Fatalf("ping reply not read: %+v", w.servers)
	}
}
