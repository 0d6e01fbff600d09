package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
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
