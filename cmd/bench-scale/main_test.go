package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPipeline runs the whole benchmark at a tiny size: a real server, real
// traffic, the real engine built and run as a process.
func TestPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the engine")
	}
	cfg := defaultConfig()
	cfg.sizes = []int{20}
	cfg.paths = []string{pathListing, pathSystem}
	cfg.streams = 2
	cfg.warmup = 2 * time.Second
	cfg.measure = 4 * time.Second
	cfg.dir = t.TempDir()
	var progress bytes.Buffer
	cfg.progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	results, err := run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2: one per sampling path", len(results))
	}
	r := results[0]
	if r.consumers != 20 || r.streams != 2 || r.path != "consumer listing" {
		t.Errorf("row is for %d consumers, %d streams, %q; want 20, 2, consumer listing", r.consumers, r.streams, r.path)
	}
	if r.ticks < 3 || r.ticks > 6 {
		t.Errorf("ticks = %d in a 4s window at 1s, want 3 to 6", r.ticks)
	}
	if !r.wired || r.sampleP50 <= 0 || r.sampleP99 < r.sampleP50 || r.sampleP99 > 2*time.Second {
		t.Errorf("wire sample times: wired %v, p50 %v, p99 %v; want 0 < p50 <= p99 <= 2s", r.wired, r.sampleP50, r.sampleP99)
	}
	if r.engineHistErr != nil || r.engineHist.count < 3 || !(r.engineHist.mean() > 0) {
		t.Errorf("engine histogram: %d samples, mean %v, err %v", int(r.engineHist.count), r.engineHist.mean(), r.engineHistErr)
	}
	if r.cpuCores <= 0 || r.cpuCores > 2 {
		t.Errorf("engine CPU = %v cores, want > 0 and sane", r.cpuCores)
	}
	if r.rssAvg <= 1<<20 || r.rssPeak < r.rssAvg || r.hwm < r.rssPeak {
		t.Errorf("RSS avg %d, peak %d, HWM %d: want avg > 1 MiB <= peak <= HWM", r.rssAvg, r.rssPeak, r.hwm)
	}
	// One STREAM.LIST and one CONSUMER.LIST per stream each tick, at least.
	if r.requests < 3 || r.kinds["CONSUMER.LIST"] < 1.5 || r.kinds["STREAM.LIST"] < 0.9 {
		t.Errorf("requests/tick = %v, by kind %v; want at least 3: a stream list and one consumer list per stream", r.requests, r.kinds)
	}
	if r.bytesIn <= 0 || r.bytesOut <= 0 {
		t.Errorf("bytes in/out per tick = %v/%v, want > 0", r.bytesIn, r.bytesOut)
	}
	if len(r.falseEvents) != 0 {
		t.Errorf("false events on healthy traffic: %v", r.falseEvents)
	}
	if r.delivered <= 0 || r.published <= 0 {
		t.Errorf("load: published %v/s, delivered %v/s; want traffic", r.published, r.delivered)
	}

	// System access: one JSZ request a tick, timed on the wire, and no
	// consumer listing once the configs are read.
	sys := results[1]
	if sys.path != "system access" || !sys.wired || sys.sampleP99 <= 0 || sys.sampleP99 > 2*time.Second {
		t.Errorf("system access row: path %q, wired %v, p99 %v", sys.path, sys.wired, sys.sampleP99)
	}
	if j := sys.kinds["SYS.PING.JSZ"]; j < 0.9 || j > 1.1 || sys.kinds["CONSUMER.LIST"] > 0.5 || sys.kinds["STREAM.LIST"] > 0.5 {
		t.Errorf("system access requests by kind per tick %v: want one JSZ request and (almost) no listing", sys.kinds)
	}
	if sys.bytesIn <= 0 || len(sys.falseEvents) != 0 {
		t.Errorf("system access: bytes in %v, false events %v", sys.bytesIn, sys.falseEvents)
	}

	for _, format := range []string{"text", "markdown"} {
		cfg.output = format
		var out bytes.Buffer
		writeTable(&out, cfg, results)
		s := out.String()
		if format == "text" {
			t.Logf("table:\n%s", s)
		}
		for _, want := range []string{"sample p99", "consumer listing", "system access", "false events", "flow and rule time"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s table lacks %q:\n%s", format, want, s)
			}
		}
		if format == "markdown" && !strings.Contains(s, "| 20 | 2 | consumer listing |") {
			t.Errorf("markdown table lacks the row:\n%s", s)
		}
	}
}

// TestClusterSystemAccount checks that --cluster's servers form one
// cluster whose system account sees all three, as a sampling path with
// system access will need.
func TestClusterSystemAccount(t *testing.T) {
	srv, err := startServers(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.shutdown()
	nc, err := nats.Connect(srv.url(1), nats.UserInfo(sysUser, sysPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Routes form shortly after the servers start: ask until all answer.
		if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.JSZ", inbox, nil); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for {
			m, err := sub.NextMsg(500 * time.Millisecond)
			if err != nil {
				break
			}
			var r struct {
				Server struct {
					Name string `json:"name"`
				} `json:"server"`
			}
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("JSZ reply: %v", err)
			}
			names[r.Server.Name] = true
		}
		if len(names) == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JSZ answered by %v, want the 3 servers", names)
		}
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--consumers", "5,50", "--streams", "5", "-o", "markdown", "--engine-arg=--system-creds=x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.sizes) != 2 || cfg.sizes[0] != 5 || cfg.sizes[1] != 50 || cfg.output != "markdown" {
		t.Errorf("parsed %+v", cfg)
	}
	if got := samplingPath(cfg.engineArgs); got != "system access" {
		t.Errorf("sampling path = %q, want system access", got)
	}
	if cfg, err := parseFlags([]string{"--paths", "system"}, &bytes.Buffer{}); err != nil || len(cfg.paths) != 1 || cfg.paths[0] != pathSystem {
		t.Errorf("--paths system: %v, %v", cfg.paths, err)
	}
	for _, bad := range [][]string{
		{"--paths", "jsz"},
		{"--paths", ""},
		{"--consumers", "10,x"},
		{"--consumers", "0"},
		{"--consumers", "50", "--streams", "100"},
		{"-o", "html"},
		{"--storage", "disk"},
		{"--replicas", "3"},
		{"--measure", "10ms"},
		{"extra"},
	} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestEventPrefix(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "happen.events"},
		{[]string{"--subject-prefix=acme.ev"}, "acme.ev"},
		{[]string{"--dry-run", "--subject-prefix", "acme.ev"}, "acme.ev"},
		{[]string{"-subject-prefix=x"}, "x"},
	} {
		if got := eventPrefix(tc.args); got != tc.want {
			t.Errorf("eventPrefix(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestParseScrapeAndQuantile(t *testing.T) {
	text := `# HELP happen_sample_duration_seconds Time to sample every stream and consumer once.
# TYPE happen_sample_duration_seconds histogram
happen_sample_duration_seconds_bucket{le="0.001"} 0
happen_sample_duration_seconds_bucket{le="0.002"} 10
happen_sample_duration_seconds_bucket{le="0.004"} 90
happen_sample_duration_seconds_bucket{le="0.008"} 100
happen_sample_duration_seconds_bucket{le="+Inf"} 100
happen_sample_duration_seconds_sum 0.3
happen_sample_duration_seconds_count 100
happen_samples_total{result="error"} 2
happen_samples_total{result="ok"} 98
`
	s, err := parseScrape([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.count != 100 || s.sum != 0.3 || s.ok != 98 || s.bad != 2 || len(s.buckets) != 5 {
		t.Fatalf("parsed %+v", s)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if got := s.mean(); !near(got, 0.003) {
		t.Errorf("mean = %v, want 0.003", got)
	}
	// Rank 50 falls in (0.002, 0.004] holding ranks 10..90: halfway.
	if got := s.quantile(0.5); !near(got, 0.003) {
		t.Errorf("p50 = %v, want 0.003", got)
	}
	// Rank 99 in (0.004, 0.008] holding 90..100: 9/10 of the way.
	if got := s.quantile(0.99); !near(got, 0.0076) {
		t.Errorf("p99 = %v, want 0.0076", got)
	}

	later := strings.NewReplacer(`{le="0.008"} 100`, `{le="0.008"} 110`, `{le="+Inf"} 100`, `{le="+Inf"} 111`,
		"_sum 0.3", "_sum 0.4", "_count 100", "_count 111").Replace(text)
	s2, err := parseScrape([]byte(later))
	if err != nil {
		t.Fatal(err)
	}
	d, err := s2.since(s)
	if err != nil {
		t.Fatal(err)
	}
	if d.count != 11 || !near(d.sum, 0.1) {
		t.Errorf("delta count %v sum %v, want 11 and 0.1", d.count, d.sum)
	}
	// One of the 11 is beyond the last finite bucket: p99 reports that bound.
	if got := d.quantile(0.99); got != 0.008 {
		t.Errorf("delta p99 = %v, want the highest finite bound 0.008", got)
	}
	if _, err := s.since(s2); err == nil {
		t.Error("a count going down was accepted")
	}
	if _, err := parseScrape([]byte("happen_samples_total{result=\"ok\"} 1\n")); err == nil {
		t.Error("metrics without the histogram were accepted")
	}
	if _, err := parseScrape([]byte("happen_sample_duration_seconds_sum x\n")); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (happen (x) y) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 37 0 0 20 0 12 0 100 2000000 5000 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 2870*time.Millisecond {
		t.Errorf("cpu = %v, want 2.87s (287 ticks)", cpu)
	}
	if _, err := parseStatCPU([]byte("1234 happen S 1")); err == nil {
		t.Error("stat without a command name was accepted")
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2 3")); err == nil {
		t.Error("short stat was accepted")
	}

	status := []byte("Name:\thappen\nVmHWM:\t  300000 kB\nVmRSS:\t  200000 kB\nThreads:\t12\n")
	rss, hwm, err := parseStatusMem(status)
	if err != nil {
		t.Fatal(err)
	}
	if rss != 200000<<10 || hwm != 300000<<10 {
		t.Errorf("rss %d hwm %d", rss, hwm)
	}
	if _, _, err := parseStatusMem([]byte("Name:\thappen\n")); err == nil {
		t.Error("status without memory lines was accepted")
	}
	if _, _, err := parseStatusMem([]byte("VmRSS:\t12 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("a unit other than kB was accepted")
	}

	busy, err := parseMachineCPU([]byte("cpu  100 5 50 1000 40 3 2 1 0 0\ncpu0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if busy != 1610*time.Millisecond { // 100+5+50+3+2+1 ticks
		t.Errorf("busy = %v, want 1.61s", busy)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("/proc/stat without a cpu line was accepted")
	}
}

func TestAPIKindAndPercentile(t *testing.T) {
	for subj, want := range map[string]string{
		"$JS.API.STREAM.LIST":                 "STREAM.LIST",
		"$JS.API.CONSUMER.LIST.ORDERS":        "CONSUMER.LIST",
		"$JS.API.STREAM.MSG.GET.ORDERS":       "STREAM.MSG.GET",
		"$JS.API.DIRECT.GET.ORDERS":           "DIRECT.GET",
		"$JS.API.DIRECT.GET.ORDERS.a.b":       "DIRECT.GET",
		"$JS.API.CONSUMER.MSG.NEXT.ORDERS.c1": "CONSUMER.MSG.NEXT",
		"$JS.API.INFO":                        "INFO",
	} {
		if got := apiKind(subj); got != want {
			t.Errorf("apiKind(%s) = %s, want %s", subj, got, want)
		}
	}
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(d[:1], 0.99); p != 100*time.Millisecond {
		t.Errorf("p99 of one = %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("p50 of none = %v", p)
	}
	if listOffset([]byte(`{"offset":256}`)) != 256 || listOffset(nil) != 0 || listOffset([]byte("junk")) != 0 {
		t.Error("listOffset misreads a list request")
	}
}

func TestParseFlagsEngines(t *testing.T) {
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || cfg.engines != 1 {
		t.Fatalf("default --engines = %d, %v; want 1", cfg.engines, err)
	}
	cfg, err = parseFlags([]string{"--engines", "3", "--engine-arg=--lease=3s", "--cluster"}, &bytes.Buffer{})
	if err != nil || cfg.engines != 3 || !cfg.cluster {
		t.Fatalf("--engines 3 --cluster: engines %d, cluster %v, %v", cfg.engines, cfg.cluster, err)
	}
	// One engine may be given the sharing flags itself, as before.
	if _, err := parseFlags([]string{"--engine-arg=--instance=x"}, &bytes.Buffer{}); err != nil {
		t.Errorf("--engines 1 with --instance: %v", err)
	}
	for _, bad := range [][]string{
		{"--engines", "0"},
		{"--engines", "-2"},
		{"--engines", "x"},
		{"--engines", "2", "--engine-arg=--ha"},
		{"--engines", "2", "--engine-arg", "--share"},
		{"--engines", "2", "--engine-arg=--instance=a"},
		{"--engines", "2", "--engine-arg=-http=127.0.0.1:1"},
	} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// sharedResult is a row of three engines sharing 10 streams (with the
// engines' own) and 100 consumers over a 10s window at 1s.
func sharedResult() result {
	hist := func(count, sum float64) scrape {
		return scrape{buckets: []bucket{{0.01, count}, {math.Inf(1), count}}, count: count, sum: sum}
	}
	return result{
		consumers: 100, streams: 10, path: "consumer listing", window: 10 * time.Second, ticks: 10,
		engines: []engineFigures{
			{name: "e1", role: "member", owned: 4, nodes: 30, cpuCores: 0.030, rssAvg: 20 << 20, rssPeak: 21 << 20,
				requests: 5, bytesIn: 3000, bytesOut: 600, engineHist: hist(20, 0.04)},
			{name: "e2", role: "leader", owned: 5, nodes: 40, cpuCores: 0.080, rssAvg: 30 << 20, rssPeak: 32 << 20,
				requests: 6, bytesIn: 4000, bytesOut: 700, engineHist: hist(20, 0.06)},
			{name: "e3", role: "member", owned: 3, nodes: 30, cpuCores: 0.020, rssAvg: 19 << 20, rssPeak: 19 << 20,
				requests: 4, bytesIn: 3000, bytesOut: 500, engineHistErr: errors.New("count went down")},
		},
		events:       map[string]int{"node.down": 1, "engine.started": 1},
		falseEvents:  []string{"node.down node=x pattern=p rule=r"},
		machineCores: 1, selfCores: 0.5, otherCores: 0.37, cpus: 2,
	}
}

func TestWriteTableShared(t *testing.T) {
	cfg := defaultConfig()
	cfg.engines = 3
	r := sharedResult()
	cfg.output = "markdown"
	var out bytes.Buffer
	writeTable(&out, cfg, []result{r})
	s := out.String()
	for _, want := range []string{
		"| consumers | streams | sampling | engine | ticks | sample p50 |",
		// e1: 0.030 cores × 10s / 10 ticks / 30 nodes = 1 ms... per node 1000 µs; 3000 B / 30 nodes = 100 B.
		"| 100 | 10 | consumer listing | e1 member | 10 | n/a | n/a | 2.0 ms | 0.030 | 20.0 MiB | 21.0 MiB | 5.0 | 2.9 KiB | 600 B | 1000.0 µs | 100 B | - |",
		// The leader's row carries the run's false events.
		"| 100 | 10 | consumer listing | e2 leader | 10 | n/a | n/a | 3.0 ms | 0.080 | 30.0 MiB | 32.0 MiB | 6.0 | 3.9 KiB | 700 B | 2000.0 µs | 100 B | 1 |",
		"| 100 | 10 | consumer listing | e3 member | 10 | n/a | n/a | n/a | 0.020 |",
		"3 engines share the streams",
		"100 consumers, e3: the engine's sample histogram is unusable: count went down",
		"100 consumers, e2 (leader): samples 5 streams (the engines' own included) and 40 of the 100 consumers",
		"e1 0.030, e2 0.080, e3 0.020, the engines 0.130 in all",
		"events from the engines' start: engine.started 1, node.down 1",
		"FALSE EVENT node.down node=x",
		"sample time on the wire: not measured with 3 engines",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown table lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "| 100 | 10 |"); n != 3 {
		t.Errorf("%d rows for the size, want one per engine:\n%s", n, s)
	}

	cfg.output, cfg.cluster = "text", true
	out.Reset()
	writeTable(&out, cfg, []result{r})
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[0], "consumers") || !strings.Contains(lines[0], "  engine  ") {
		t.Errorf("text header %q lacks the engine column", lines[0])
	}
	for i, name := range []string{"e1 member", "e2 leader", "e3 member"} {
		if !strings.Contains(lines[1+i], name) {
			t.Errorf("text row %d = %q, want engine %s", 1+i, lines[1+i], name)
		}
	}
	if !strings.Contains(out.String(), "eK connected to server K-1 mod 3") {
		t.Errorf("text table does not say where the engines connect with --cluster:\n%s", out.String())
	}
}

// TestWriteTableOneEngine keeps --engines 1's table as it was: no engine
// column, one row a size.
func TestWriteTableOneEngine(t *testing.T) {
	cfg := defaultConfig()
	cfg.output = "markdown"
	r := result{consumers: 100, streams: 10, path: "consumer listing", window: 10 * time.Second, ticks: 10,
		wired: true, sampleP50: 5 * time.Millisecond, sampleP99: 9 * time.Millisecond, cpus: 2}
	r.cpuCores, r.nodes, r.bytesIn = 0.05, 100, 5000
	var out bytes.Buffer
	writeTable(&out, cfg, []result{r})
	s := out.String()
	if !strings.HasPrefix(s, "| "+strings.Join(columns, " | ")+" |\n") || strings.Contains(s, "engine |") {
		t.Errorf("header is not the one-engine columns:\n%s", s)
	}
	want := "| 100 | 10 | consumer listing | 10 | 5.0 ms | 9.0 ms | n/a | 0.050 | 0.0 MiB | 0.0 MiB | 0.0 | 4.9 KiB | 0 B | 500.0 µs | 50 B | 0 |"
	if !strings.Contains(s, want) {
		t.Errorf("row lacks %q:\n%s", want, s)
	}
	if strings.Contains(s, "share the streams") {
		t.Errorf("one engine's table speaks of sharing:\n%s", s)
	}
}

func TestCheckShared(t *testing.T) {
	mk := func(roles ...string) []*sharedEngine {
		var es []*sharedEngine
		for i, role := range roles {
			es = append(es, &sharedEngine{name: fmt.Sprintf("e%d", i+1), st: shareStatus{Role: role, Members: []string{"e1", "e2", "e3"}}})
		}
		return es
	}
	if err := checkShared(mk("member", "leader", "member"), 3); err != nil {
		t.Errorf("one leader, two members: %v", err)
	}
	if got := leaderOf(mk("member", "leader", "member")); got != "e2" {
		t.Errorf("leaderOf = %s, want e2", got)
	}
	for name, es := range map[string][]*sharedEngine{
		"no leader":  mk("member", "member", "member"),
		"two lead":   mk("leader", "leader", "member"),
		"a standby":  mk("leader", "standby", "member"),
		"no sharing": mk("leader", "", "member"),
	} {
		if err := checkShared(es, 3); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	es := mk("leader", "member", "member")
	es[2].st.Members = []string{"e2", "e3"}
	if err := checkShared(es, 3); err == nil || !strings.Contains(err.Error(), "e3 lists 2 members") {
		t.Errorf("a member missing one: %v", err)
	}
}

func TestParseProcNetTCP(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:10E1 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0100007F:10E1 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
`)
	ports, err := parseProcNetTCP(table, map[uint64]bool{2222: true, 1111: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0] != 0x1F90 || ports[1] != 0xC350 {
		t.Errorf("ports = %v, want [8080 50000]: the local ports of inodes 1111 and 2222 only", ports)
	}
	if _, err := parseProcNetTCP([]byte("   0: 0100007F:1F90 00000000:0000 0A\n"), nil); err == nil {
		t.Error("a short line was accepted")
	}
	if _, err := parseProcNetTCP([]byte("   0: 0100007F:ZZZZ 00000000:0000 0A 0 0 0 0 0 4444\n"), map[uint64]bool{4444: true}); err == nil {
		t.Error("a port that is not hex was accepted")
	}
}

// TestLocalPorts finds this process's own connection's client port, as
// the server's connz reports it for an engine.
func TestLocalPorts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports, err := localPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr).Port
	if !ports[client] || !ports[ln.Addr().(*net.TCPAddr).Port] {
		t.Errorf("ports %v lack the client's %d or the listener's %v", ports, client, ln.Addr())
	}
}
