package flow

import (
	"cmp"
	"slices"
	"time"
)

// Signals is what the NATS servers said about themselves during a tick,
// beside the flow: server shutdowns, heartbeats and routes (read only with
// system access) and consumer leader elections (JetStream advisories). It
// is evidence for the rules, never a verdict: a node is judged on its flow,
// and Signals only say why a flow stopped. The zero value means nothing was
// heard.
type Signals struct {
	// Servers is true when server events are read (system access), so a
	// zero count below means "none" rather than "unknown".
	Servers bool
	// Down lists the servers that announced their shutdown (or lame duck
	// mode), or whose heartbeats stopped, and have not been heard since.
	Down []ServerDown
	// RoutesLost counts the routes the servers still heard from had and
	// have no more.
	RoutesLost int
	// Elected holds the consumers that had a leader elected recently: the
	// latest election of each, sorted by key.
	Elected []Election
}

// ServerDown is one server that went away.
type ServerDown struct {
	Name string
	// Since is the engine time the loss was known; LastHeard the engine
	// time the server was last heard from, which an unannounced loss
	// leaves well before Since (the heartbeats have to be missed first).
	Since, LastHeard time.Time
	// Announced is true for a server that said it was shutting down or
	// entering lame duck mode; false for one whose heartbeats stopped (a
	// crash, or a cut that the engine's side of the network cannot tell
	// from one).
	Announced bool
}

// Election is a consumer's leader election.
type Election struct {
	Key    NodeKey
	Leader string
	At     time.Time // engine time the advisory arrived
}

// Annotate copies the signals of snap into st: node.leaderChangedSeconds,
// group.serverDown and group.serverDownSeconds, and the system's server
// counts. The tracker computes the flow; this adds what the servers said
// about the same tick, so the engine and its replay add it alike.
func Annotate(st *State, sig *Signals, now time.Time) {
	sys := &st.System
	sys.ServerSignals = sig.Servers
	sys.ServersDown, sys.ServersAnnouncedDown, sys.RoutesLost = len(sig.Down), 0, sig.RoutesLost
	sys.ServerDownSeconds = -1
	var latest time.Time
	for _, d := range sig.Down {
		if d.Announced {
			sys.ServersAnnouncedDown++
		}
		if d.Since.After(latest) {
			latest = d.Since
		}
	}
	if !latest.IsZero() {
		sys.ServerDownSeconds = secondsSince(now, latest)
	}
	for i := range st.Nodes {
		st.Nodes[i].LeaderChangedSeconds = -1
	}
	for i := range st.Groups {
		st.Groups[i].ServerDown, st.Groups[i].ServerDownSeconds = false, -1
	}
	for _, el := range sig.Elected {
		i, ok := slices.BinarySearchFunc(st.Nodes, el.Key, func(n Node, k NodeKey) int { return compareKeys(n.Key, k) })
		if !ok {
			continue
		}
		n := &st.Nodes[i]
		n.LeaderChangedSeconds = secondsSince(now, el.At)
		// A group depends on a lost server when one of its consumers had to
		// elect a new leader since the server was last heard from: the
		// server led it. Its other servers elect as soon as their own
		// heartbeats from it stop, before the engine can know.
		if n.Group == "" || latest.IsZero() {
			continue
		}
		for _, d := range sig.Down {
			if el.At.Before(d.LastHeard) {
				continue
			}
			g, ok := slices.BinarySearchFunc(st.Groups, n.Group, func(g Group, name string) int { return cmp.Compare(g.Name, name) })
			if !ok {
				break
			}
			grp := &st.Groups[g]
			s := secondsSince(now, d.Since)
			if !grp.ServerDown || s < grp.ServerDownSeconds {
				grp.ServerDown, grp.ServerDownSeconds = true, s
			}
		}
	}
}

func secondsSince(now, t time.Time) float64 {
	return max(0, now.Sub(t).Seconds())
}
