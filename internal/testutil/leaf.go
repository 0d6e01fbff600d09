package testutil

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// LeafSite is a hub server with JetStream and a leaf-node server, a remote
// site, with no JetStream of its own, both in the global account with no
// auth. The leaf extends the hub's account over its one leaf connection, so
// its clients' JetStream API requests, pulls and acks reach the hub's
// streams through that connection, and it alone: it runs through a Proxy a
// test can cut, as a WAN link to a site goes down, while the site's clients
// stay connected to their leaf server.
type LeafSite struct {
	Hub  *server.Server
	Leaf *server.Server
	link *Proxy
}

// RunLeafSite starts the hub, then the leaf soliciting its leaf connection
// through the proxy, and waits until the connection is up.
func RunLeafSite(t testing.TB) *LeafSite {
	t.Helper()
	hopts := ServerOptions(t)
	hopts.ServerName = "hub"
	hopts.LeafNode.Host = "127.0.0.1"
	hopts.LeafNode.Port = FreePort(t)
	// The hub tells a leaf that connects to it where else to reconnect; a
	// leaf that reconnected to the real port would bypass the proxy. Advertise
	// an address where nothing listens, so the leaf keeps to the proxied one.
	hopts.LeafNode.Advertise = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	hub := StartServer(t, hopts)

	link := NewProxy(t, fmt.Sprintf("127.0.0.1:%d", hopts.LeafNode.Port))
	lopts := ServerOptions(t)
	lopts.ServerName = "leaf"
	lopts.JetStream = false
	lopts.StoreDir = ""
	// A hub denies a leaf's clients its JetStream API unless the leaf says
	// which JetStream domain their account uses; "" is the hub's own, so
	// the site's clients use the hub's JetStream as if connected to it.
	lopts.JsAccDefaultDomain = map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: ""}
	lopts.LeafNode.ReconnectInterval = server.DEFAULT_LEAF_NODE_RECONNECT
	lopts.LeafNode.Remotes = []*server.RemoteLeafOpts{{
		URLs: []*url.URL{{Scheme: "nats-leaf", Host: link.Addr()}},
	}}
	leaf := StartServer(t, lopts)
	s := &LeafSite{Hub: hub, Leaf: leaf, link: link}
	s.WaitLinked(t, 10*time.Second)
	return s
}

// Cut severs the leaf connection and refuses it until Heal. Clients of
// either server stay connected to it.
func (s *LeafSite) Cut() { s.link.Cut() }

// Heal lets the leaf connect again; it retries every second.
func (s *LeafSite) Heal() { s.link.Heal() }

// WaitLinked waits until the leaf connection is up on both ends.
func (s *LeafSite) WaitLinked(t testing.TB, within time.Duration) {
	t.Helper()
	Eventually(t, within, func() bool {
		return s.Hub.NumLeafNodes() == 1 && s.Leaf.NumLeafNodes() == 1
	}, "leaf connection up")
}
