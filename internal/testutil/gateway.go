package testutil

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// SuperCluster is two JetStream clusters, "A" and "B", joined by gateways
// into one supercluster: one account, one JetStream whose meta group spans
// both, each stream placed in one cluster (by default the cluster of the
// server its creator is connected to; Placement{Cluster: "B"} puts it in B).
// Every gateway connection runs through a Proxy, so a test can cut the two
// clusters apart, as a WAN link between sites goes down, while the routes
// inside each cluster and every client connection stay up.
type SuperCluster struct {
	A, B []*server.Server
	// links are the proxies in front of every server's gateway port.
	links []*Proxy
	opts  []*server.Options // A's servers', then B's
}

// RunSuperCluster starts cluster A with nA servers (named a0..) and cluster
// B with nB servers (b0..), waits until every gateway is up and every server
// follows one JetStream meta leader, and makes sure that leader is in A.
// With nA > nB, A then holds the meta group's majority and its leadership
// across a cut, so JetStream stays available in A, as in a supercluster
// whose main site is A; cut off, B has no meta leader. It fails the test
// unless nA > nB >= 1.
func RunSuperCluster(t testing.TB, nA, nB int) *SuperCluster {
	t.Helper()
	if nB < 1 || nA <= nB {
		t.Fatalf("supercluster of %d and %d servers: cluster A must hold the majority", nA, nB)
	}
	type member struct {
		cluster, name string
		port, gwPort  int
		link          *Proxy
	}
	sc := &SuperCluster{}
	var members []*member
	for _, c := range []struct {
		name   string
		prefix string
		n      int
	}{{"A", "a", nA}, {"B", "b", nB}} {
		for i := range c.n {
			m := &member{cluster: c.name, name: fmt.Sprintf("%s%d", c.prefix, i), port: FreePort(t), gwPort: FreePort(t)}
			m.link = NewProxy(t, fmt.Sprintf("127.0.0.1:%d", m.gwPort))
			members = append(members, m)
			sc.links = append(sc.links, m.link)
		}
	}
	start := func(cluster string) []*server.Server {
		var routes []*url.URL
		var remote *server.RemoteGatewayOpts
		for _, m := range members {
			if m.cluster == cluster {
				routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", m.port)})
				continue
			}
			if remote == nil {
				remote = &server.RemoteGatewayOpts{Name: m.cluster}
			}
			remote.URLs = append(remote.URLs, &url.URL{Scheme: "nats", Host: m.link.Addr()})
		}
		var servers []*server.Server
		for _, m := range members {
			if m.cluster != cluster {
				continue
			}
			opts := ServerOptions(t)
			opts.ServerName = m.name
			opts.Cluster.Name = cluster
			opts.Cluster.Host = "127.0.0.1"
			opts.Cluster.Port = m.port
			// Every server of the cluster, itself included (a server skips
			// a route to itself): JetStream needs configured routes even in
			// a cluster of one, and counts them, with the gateway URLs, to
			// size the meta group it bootstraps.
			opts.Routes = routes
			opts.Gateway.Name = cluster
			opts.Gateway.Host = "127.0.0.1"
			opts.Gateway.Port = m.gwPort
			// Servers tell the other cluster their gateway addresses, which
			// it would dial directly, bypassing the proxies: advertise one
			// where nothing listens, so every gateway is a proxied one.
			opts.Gateway.Advertise = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
			opts.Gateway.Gateways = []*server.RemoteGatewayOpts{remote}
			sc.opts = append(sc.opts, opts)
			servers = append(servers, StartServer(t, opts))
		}
		return servers
	}
	sc.A = start("A")
	sc.B = start("B")
	sc.WaitLinked(t, 30*time.Second)
	sc.waitMeta(t, nil)
	l := leaderIn(sc.B)
	if l == nil {
		return sc
	}
	// A new meta group elects its first leader only with every server's
	// vote, so it may be any of them. Restart B's servers: A's majority
	// elects one of its own meanwhile, and B's rejoin as followers.
	t.Logf("JetStream meta leader %s is in cluster B: restarting B's servers", l.Name())
	for i, s := range sc.B {
		sc.B[i] = RestartServer(t, s, sc.opts[nA+i])
	}
	sc.WaitLinked(t, 30*time.Second)
	sc.waitMeta(t, sc.A)
	return sc
}

// waitMeta waits until a meta leader, in servers if not nil, has every
// server as a peer and every server is current with it.
func (sc *SuperCluster) waitMeta(t testing.TB, in []*server.Server) {
	t.Helper()
	all := sc.servers()
	Eventually(t, 30*time.Second, func() bool {
		l := sc.MetaLeader()
		if l == nil || (in != nil && leaderIn(in) != l) || len(l.JetStreamClusterPeers()) != len(all) {
			return false
		}
		for _, s := range all {
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	}, "every server follows one JetStream meta leader")
}

func (sc *SuperCluster) servers() []*server.Server {
	return append(append([]*server.Server(nil), sc.A...), sc.B...)
}

// leaderIn is the server of servers that leads the JetStream meta group,
// or nil.
func leaderIn(servers []*server.Server) *server.Server {
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// MetaLeader is the server leading the JetStream meta group, or nil while
// none does.
func (sc *SuperCluster) MetaLeader() *server.Server {
	if s := leaderIn(sc.A); s != nil {
		return s
	}
	return leaderIn(sc.B)
}

// Cut severs every gateway connection between A and B and refuses them
// until Heal.
func (sc *SuperCluster) Cut() {
	for _, l := range sc.links {
		l.Cut()
	}
}

// Heal lets the gateways connect again; servers retry about every second.
func (sc *SuperCluster) Heal() {
	for _, l := range sc.links {
		l.Heal()
	}
}

// WaitLinked waits until every server has its gateway to the other
// cluster.
func (sc *SuperCluster) WaitLinked(t testing.TB, within time.Duration) {
	t.Helper()
	Eventually(t, within, func() bool {
		for _, s := range sc.servers() {
			if s.NumOutboundGateways() != 1 {
				return false
			}
		}
		return true
	}, "gateways between A and B up")
}
