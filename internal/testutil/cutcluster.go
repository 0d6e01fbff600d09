package testutil

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// CutCluster is a cluster of JetStream servers whose every route runs
// through a Proxy of its own, one per ordered pair of servers, so a test can
// cut one server off from the others, as a network partition does, while
// its clients stay connected to it.
type CutCluster struct {
	Servers []*server.Server
	Opts    []*server.Options
	// links[i][j] carries the route server i solicits to server j.
	links [][]*Proxy
}

// RunCutCluster starts n servers like RunCluster (named s0.., tagged
// node:s0..), with routes through per-pair proxies.
func RunCutCluster(t testing.TB, n int) *CutCluster {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		ports[i] = FreePort(t)
	}
	c := &CutCluster{Servers: make([]*server.Server, n), Opts: make([]*server.Options, n), links: make([][]*Proxy, n)}
	for i := range n {
		c.links[i] = make([]*Proxy, n)
		for j := range n {
			if i != j {
				c.links[i][j] = NewProxy(t, fmt.Sprintf("127.0.0.1:%d", ports[j]))
			}
		}
	}
	for i := range n {
		opts := ServerOptions(t)
		opts.ServerName = fmt.Sprintf("s%d", i)
		opts.Tags = []string{"node:" + opts.ServerName}
		opts.Cluster.Name = "happen"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = ports[i]
		// Servers gossip each other's route address and connect to it
		// directly, which would bypass the proxies: advertise one where
		// nothing listens, so every route is the explicit, proxied one.
		opts.Cluster.Advertise = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		for j := range n {
			if i != j {
				opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: c.links[i][j].Addr()})
			}
		}
		c.Opts[i] = opts
		c.Servers[i] = StartServer(t, opts)
	}
	return c
}

// Isolate cuts every route to and from server i until Rejoin.
func (c *CutCluster) Isolate(i int) {
	for j := range c.links {
		if j != i {
			c.links[i][j].Cut()
			c.links[j][i].Cut()
		}
	}
}

// Rejoin lets server i's routes connect again; the servers re-solicit them
// within their route reconnect delay (about a second).
func (c *CutCluster) Rejoin(i int) {
	for j := range c.links {
		if j != i {
			c.links[i][j].Heal()
			c.links[j][i].Heal()
		}
	}
}

// Restart stops server i and starts it again on the same ports and store,
// as an operator's rolling restart does.
func (c *CutCluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.Servers[i] = RestartServer(t, c.Servers[i], c.Opts[i])
}

// URLs is every server's client URL, comma-separated, the way clients that
// fail over are configured.
func (c *CutCluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}
