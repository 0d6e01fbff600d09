package main

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The account the workload and the engine use, and the system account a
// sampling path with system access can use.
const (
	benchUser     = "bench"
	benchPassword = "bench"
	sysUser       = "sys"
	sysPassword   = "sys"
)

// servers is the embedded NATS: one server, or three routed into a cluster.
type servers struct {
	list []*server.Server
}

// startServers starts one JetStream server, or three routed together, on
// loopback with their stores under dir. Both shapes have the accounts
// BENCH (JetStream) and SYS (the system account).
func startServers(dir string, cluster bool) (*servers, error) {
	n := 1
	if cluster {
		n = 3
	}
	var routes []string
	clusterPorts := make([]int, n)
	if cluster {
		for i := range n {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			clusterPorts[i] = p
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
		}
	}
	s := &servers{}
	for i := range n {
		conf := serverConfig(fmt.Sprintf("bench-%d", i), filepath.Join(dir, fmt.Sprintf("s%d", i)), clusterPorts[i], routes)
		opts := &server.Options{}
		if err := opts.ProcessConfigString(conf); err != nil {
			s.shutdown()
			return nil, fmt.Errorf("server %d config: %w", i, err)
		}
		opts.NoLog, opts.NoSigs = true, true
		srv, err := server.NewServer(opts)
		if err != nil {
			s.shutdown()
			return nil, fmt.Errorf("server %d: %w", i, err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(30 * time.Second) {
			srv.Shutdown()
			s.shutdown()
			return nil, fmt.Errorf("server %d not ready for connections within 30s", i)
		}
		s.list = append(s.list, srv)
	}
	return s, nil
}

// serverConfig is one server's configuration. clusterPort 0 means no
// cluster.
func serverConfig(name, storeDir string, clusterPort int, routes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nlisten: \"127.0.0.1:-1\"\n", name)
	fmt.Fprintf(&b, "jetstream { store_dir: %q, max_memory_store: 2G, max_file_store: 20G }\n", storeDir)
	fmt.Fprintf(&b, "accounts {\n  BENCH { jetstream: enabled, users: [ {user: %q, password: %q} ] }\n", benchUser, benchPassword)
	fmt.Fprintf(&b, "  SYS { users: [ {user: %q, password: %q} ] }\n}\nsystem_account: SYS\n", sysUser, sysPassword)
	if clusterPort > 0 {
		fmt.Fprintf(&b, "cluster { name: \"bench\", listen: \"127.0.0.1:%d\", routes: [%s] }\n", clusterPort, quoteAll(routes))
	}
	return b.String()
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// url is the client URL of server i (modulo the server count).
func (s *servers) url(i int) string { return s.list[i%len(s.list)].ClientURL() }

func (s *servers) shutdown() {
	for _, srv := range s.list {
		srv.Shutdown()
	}
	for _, srv := range s.list {
		srv.WaitForShutdown()
	}
}

// connStats are the server's counters of one client connection, or the sum
// of several, from the server's side: in is what the client sent.
type connStats struct {
	inMsgs, outMsgs, inBytes, outBytes int64
	conns                              []string // server/cid of each connection counted
}

// connsNamed sums the counters of every open connection called one of
// names on any of the servers; each name must have one.
func (s *servers) connsNamed(names ...string) (connStats, error) { return s.connsOf(nil, names...) }

// connsOf is connsNamed for the connections of one process only: those
// whose client port is among ports (nil: any). Engines sharing the streams
// all use the same connection names.
func (s *servers) connsOf(ports map[int]bool, names ...string) (connStats, error) {
	var st connStats
	for _, name := range names {
		one, err := s.connNamed(name, ports)
		if err != nil {
			return st, err
		}
		st.inMsgs += one.inMsgs
		st.outMsgs += one.outMsgs
		st.inBytes += one.inBytes
		st.outBytes += one.outBytes
		st.conns = append(st.conns, one.conns...)
	}
	return st, nil
}

func (s *servers) connNamed(name string, ports map[int]bool) (connStats, error) {
	var st connStats
	for _, srv := range s.list {
		cz, err := srv.Connz(&server.ConnzOptions{Limit: 1 << 16})
		if err != nil {
			return st, fmt.Errorf("connz on %s: %w", srv.Name(), err)
		}
		for _, c := range cz.Conns {
			if c.Name != name || (ports != nil && !ports[c.Port]) {
				continue
			}
			st.inMsgs += c.InMsgs
			st.outMsgs += c.OutMsgs
			st.inBytes += c.InBytes
			st.outBytes += c.OutBytes
			st.conns = append(st.conns, fmt.Sprintf("%s/%d", srv.Name(), c.Cid))
		}
	}
	if len(st.conns) == 0 {
		if ports != nil {
			return st, fmt.Errorf("no connection named %s from the engine's ports %v on any server", name, slices.Sorted(maps.Keys(ports)))
		}
		return st, errors.New("no connection named " + name + " on any server")
	}
	return st, nil
}
