package testutil

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// RunCluster starts n JetStream servers routed together on loopback, named
// s0..s<n-1> and tagged node:s0..node:s<n-1> so a test can place a stream on
// one of them. mods adjust each server's options before it starts.
func RunCluster(t testing.TB, n int, mods ...func(*server.Options)) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range n {
		ports[i] = FreePort(t)
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, n)
	for i := range n {
		opts := ServerOptions(t)
		opts.ServerName = fmt.Sprintf("s%d", i)
		opts.Tags = []string{"node:" + opts.ServerName}
		opts.Cluster.Name = "happen"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = ports[i]
		opts.Routes = routes
		for _, m := range mods {
			m(opts)
		}
		servers[i] = StartServer(t, opts)
	}
	return servers
}
