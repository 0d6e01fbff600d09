package sampler

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// recorded reads the CONSUMER.LIST replies recorded from real servers by
// TestRecordConsumerListings.
func recorded(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "consumer_list_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded replies in testdata (%v)", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// bothWays decodes b with encoding/json and with decodeConsumerPage, each
// into a page that first held prev (as the sampler reuses its pages), and
// reports whether the scanner took it.
func bothWays(prev, b []byte) (want, got consumerPage, wantErr, gotErr error, scanned bool) {
	if prev != nil {
		_ = decodeConsumerPageJSON(prev, &want)
		_ = decodeConsumerPageJSON(prev, &got)
	}
	want.reset()
	wantErr = decodeConsumerPageJSON(b, &want)
	var probe consumerPage
	scanned = scanConsumerPage(b, &probe)
	got.reset()
	gotErr = decodeConsumerPage(b, &got)
	return want, got, wantErr, gotErr, scanned
}

// sameOutcome fails t unless both decodings failed alike or gave equal
// pages, naming the first consumer field that differs.
func sameOutcome(t *testing.T, name string, want, got consumerPage, wantErr, gotErr error) {
	t.Helper()
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("%s: error %v, encoding/json %v", name, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	if !reflect.DeepEqual(want.apiPage, got.apiPage) {
		t.Fatalf("%s: header %+v, encoding/json %+v", name, got.apiPage, want.apiPage)
	}
	if len(want.Items) != len(got.Items) || (want.Items == nil) != (got.Items == nil) {
		t.Fatalf("%s: %d consumers (nil %v), encoding/json %d (nil %v)", name, len(got.Items), got.Items == nil, len(want.Items), want.Items == nil)
	}
	for i := range want.Items {
		if f := firstDiff(reflect.ValueOf(want.Items[i]), reflect.ValueOf(got.Items[i]), "consumer"); f != "" {
			t.Fatalf("%s: consumer %d (%s): %s differs:\n got  %+v\n want %+v", name, i, want.Items[i].Name, f, got.Items[i], want.Items[i])
		}
	}
}

// firstDiff names the first field, depth first, where a and b differ.
func firstDiff(a, b reflect.Value, path string) string {
	if a.Kind() == reflect.Struct && a.Type().PkgPath() != "time" {
		for i := range a.NumField() {
			f := a.Type().Field(i)
			if !f.IsExported() {
				if !reflect.DeepEqual(a.Field(i).String(), b.Field(i).String()) ||
					a.Field(i).Kind() == reflect.Bool && a.Field(i).Bool() != b.Field(i).Bool() {
					return path + "." + f.Name
				}
				continue
			}
			if d := firstDiff(a.Field(i), b.Field(i), path+"."+f.Name); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return path
	}
	return ""
}

// TestDecodeRecorded decodes real replies both ways: a cluster's page of
// 256 consumers (leaders and replicas), push, paused, filtered,
// multi-filter, ack none, waiting and ignored consumers on a cluster and a
// single server, metadata with escapes and odd values, a page past the
// end and an error reply.
func TestDecodeRecorded(t *testing.T) {
	// Those the scanner must take itself; the error reply must go to
	// encoding/json.
	fast := map[string]bool{
		"consumer_list_cluster_256.json":     true,
		"consumer_list_cluster_varied.json":  true,
		"consumer_list_single_varied.json":   true,
		"consumer_list_single_past_end.json": true,
	}
	for name, b := range recorded(t) {
		want, got, wantErr, gotErr, scanned := bothWays(nil, b)
		sameOutcome(t, name, want, got, wantErr, gotErr)
		if scanned != fast[name] {
			t.Errorf("%s: scanned %v, want %v", name, scanned, fast[name])
		}
		// The same into a page reused from the largest reply.
		want, got, wantErr, gotErr, _ = bothWays(recorded(t)["consumer_list_cluster_256.json"], b)
		sameOutcome(t, name+" (reused page)", want, got, wantErr, gotErr)
	}

	// The recordings hold what they claim to.
	var p consumerPage
	if err := decodeConsumerPage(recorded(t)["consumer_list_cluster_256.json"], &p); err != nil || len(p.Items) != 256 {
		t.Fatalf("256 page: %d consumers, %v", len(p.Items), err)
	}
	var acked, pending, leaders int
	for _, c := range p.Items {
		if c.AckFloor.Consumer > 0 && !c.AckFloor.Last.IsZero() {
			acked++
		}
		if c.NumPending > 0 || c.NumAckPending > 0 {
			pending++
		}
		if c.Cluster.Leader != "" {
			leaders++
		}
		if !c.Config.Metadata.hasGroup || c.Config.FilterSubject == "" || c.Config.AckPolicy != "explicit" || c.Created.IsZero() || c.TimeStamp.IsZero() {
			t.Fatalf("256 page: %+v", c)
		}
	}
	if acked == 0 || pending == 0 || leaders != 256 {
		t.Fatalf("256 page: %d acked, %d with work, %d with a leader", acked, pending, leaders)
	}
	for _, file := range []string{"consumer_list_cluster_varied.json", "consumer_list_single_varied.json"} {
		p.reset()
		if err := decodeConsumerPage(recorded(t)[file], &p); err != nil {
			t.Fatal(err)
		}
		byName := map[string]consumerInfo{}
		for _, c := range p.Items {
			byName[c.Name] = c
		}
		clustered := strings.Contains(file, "cluster")
		for _, check := range []struct {
			what string
			ok   bool
		}{
			{"push", byName["push"].Config.DeliverSubject == "deliver.push" && byName["push"].Config.Metadata.node == "push-1"},
			{"paused", byName["paused"].Paused},
			{"multi", len(byName["multi"].Config.FilterSubjects) == 2 && byName["multi"].NumAckPending == 1 && byName["multi"].Config.AckPolicy == "all"},
			{"none", byName["none"].Config.AckPolicy == "none" && byName["none"].Config.FilterSubject == "v.c"},
			{"ignored", byName["ignored"].Config.Metadata.ignore},
			{"odd", byName["odd"].Config.Metadata.node == "has space" && byName["odd"].Config.Metadata.group == "g<1>&\"q\"\t"},
			{"unicode", byName["unicode"].Config.Metadata.node == "zürich-ü" && byName["unicode"].Config.Metadata.group == "日本"},
			{"waiting", byName["waiting"].NumWaiting == 1},
			{"leader", (byName["push"].Cluster.Leader != "") == clustered},
		} {
			if !check.ok {
				t.Errorf("%s: %s consumer not as recorded: %+v", file, check.what, byName[check.what])
			}
		}
	}
}

// decodeCases are replies of every shape the scanner must take, or must
// leave to encoding/json, with whether it takes them.
var decodeCases = []struct {
	name string
	in   string
	fast bool
}{
	{"empty object", `{}`, true},
	{"white space", " \t\r\n{ \"total\" : 1 , \"consumers\" : [ ] } \n", true},
	{"unknown fields everywhere", `{"x":{"a":[1,2.5e-3,{"b":null}],"c":"d\"\\\u00e9\n"},"total":2,"consumers":[{"z":[true,false],"name":"a","config":{"q":{"r":[]},"metadata":{"k":"v\u0041","happen.node":"n"}},"cluster":{"replicas":[{"name":"s0"}],"leader":"s1"}}]}`, true},
	{"any field order", `{"consumers":[{"ts":"2026-01-02T03:04:05.5Z","cluster":{"leader":"s0"},"paused":true,"push_bound":true,"num_pending":7,"num_waiting":3,"num_redelivered":2,"num_ack_pending":1,"ack_floor":{"last_active":"2026-01-02T03:04:05Z","stream_seq":4,"consumer_seq":3},"delivered":{"stream_seq":9,"consumer_seq":8},"config":{"filter_subjects":["a","b"],"filter_subject":"f","metadata":{"happen.group":"g","happen.ignore":"true"},"ack_wait":-5,"ack_policy":"weird","deliver_subject":"d"},"created":"2025-12-31T23:59:59+01:00","name":"c"}],"missing":["m1","m2"],"offset":3,"total":9}`, true},
	{"nulls", `{"error":null,"total":null,"missing":null,"consumers":[null,{"name":null,"created":null,"config":null,"delivered":null,"ack_floor":{"consumer_seq":null,"last_active":null},"num_pending":null,"paused":null,"cluster":null,"ts":null},{"config":{"metadata":null,"filter_subjects":null,"ack_policy":null}}]}`, true},
	{"null consumers", `{"consumers":null}`, true},
	{"extreme integers", `{"consumers":[{"num_pending":18446744073709551615,"num_ack_pending":-9223372036854775808,"num_waiting":9223372036854775807,"num_redelivered":-0,"config":{"ack_wait":0}}]}`, true},
	{"non-ASCII kept strings", `{"consumers":[{"name":"zürich","config":{"metadata":{"happen.node":"日本","ö":"ü"}}}]}`, true},
	{"empty metadata and arrays", `{"missing":[],"consumers":[{"config":{"metadata":{},"filter_subjects":[]}}]}`, true},
	{"deep unknown value", `{"x":` + strings.Repeat("[", 150) + strings.Repeat("]", 150) + `}`, true},

	{"error reply", `{"error":{"code":404,"err_code":10059,"description":"stream not found"},"consumers":[]}`, false},
	{"escape in a name", `{"consumers":[{"name":"a\u0062"}]}`, true},
	{"escapes in metadata", `{"consumers":[{"config":{"metadata":{"happen.node":"a\tb","happen.gr\u006fup":"\ud800\"","x\n":"\/"}}}]}`, true},
	{"escapes in filters", `{"missing":["\u00e9"],"consumers":[{"config":{"filter_subjects":["a\\b","\udc00x"],"filter_subject":"\r"},"cluster":{"leader":"\u0073\u0030"}}]}`, true},
	{"escaped key", `{"consumers":[{"n\u0061me":"x"}]}`, false},
	{"upper case key", `{"consumers":[{"Name":"x","NUM_PENDING":3}]}`, false},
	{"folding key", "{\"consumers\":[{\"num_pending\":1,\"\u017fTREAM\":2}]}", false},
	{"duplicate field", `{"consumers":[{"name":"a","name":"b"}]}`, false},
	{"duplicate object", `{"consumers":[{"config":{"ack_wait":1},"config":{"filter_subject":"x"}}]}`, false},
	{"duplicate metadata key", `{"consumers":[{"config":{"metadata":{"happen.node":"a","happen.node":"b"}}}]}`, true},
	{"exponent", `{"consumers":[{"num_pending":1e3}]}`, false},
	{"fraction", `{"total":1.0}`, false},
	{"negative unsigned", `{"consumers":[{"num_pending":-1}]}`, false},
	{"overflow", `{"consumers":[{"num_pending":18446744073709551616}]}`, false},
	{"int64 overflow", `{"consumers":[{"num_waiting":9223372036854775808}]}`, false},
	{"string for a number", `{"consumers":[{"num_pending":"3"}]}`, false},
	{"number for a string", `{"consumers":[{"name":3}]}`, false},
	{"object for a string", `{"consumers":[{"name":{}}]}`, false},
	{"bad time", `{"consumers":[{"created":"yesterday"}]}`, false},
	{"number time", `{"consumers":[{"ts":5}]}`, false},
	{"invalid UTF-8", "{\"consumers\":[{\"name\":\"a\xffb\"},{\"config\":{\"metadata\":{\"happen.group\":\"\xc3\"}}}]}", true},
	{"invalid UTF-8 skipped", "{\"x\":\"a\xffb\",\"consumers\":[]}", true},
	{"null filter", `{"consumers":[{"config":{"filter_subjects":["a",null]}}]}`, false},
	{"escaped ack policy", `{"consumers":[{"config":{"ack_policy":"\u006eone"}}]}`, true},
	{"null metadata value", `{"consumers":[{"config":{"metadata":{"happen.node":null}}}]}`, true},
	{"number metadata value", `{"consumers":[{"config":{"metadata":{"happen.group":1}}}]}`, false},
	{"top-level null", `null`, false},
	{"top-level array", `[]`, false},
	{"trailing garbage", `{"total":1}x`, false},
	{"two values", `{}{}`, false},
	{"truncated", `{"consumers":[{"name":"a"`, false},
	{"leading zero", `{"total":01}`, false},
	{"bad escape skipped", `{"x":"\q"}`, false},
	{"short unicode escape", `{"x":"\u12"}`, false},
	{"control character", "{\"x\":\"a\nb\"}", false},
	{"trailing comma", `{"total":1,}`, false},
	{"missing colon", `{"total" 1}`, false},
	{"bare word", `{"x":nul}`, false},
	{"lone minus", `{"x":-}`, false},
	{"too deep", `{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, false},
	{"empty", ``, false},
}

func TestDecodeCases(t *testing.T) {
	prev := recorded(t)["consumer_list_cluster_varied.json"]
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			want, got, wantErr, gotErr, scanned := bothWays(nil, []byte(tc.in))
			sameOutcome(t, tc.name, want, got, wantErr, gotErr)
			if scanned != tc.fast {
				t.Errorf("scanned %v, want %v (encoding/json error: %v)", scanned, tc.fast, wantErr)
			}
			want, got, wantErr, gotErr, _ = bothWays(prev, []byte(tc.in))
			sameOutcome(t, tc.name+" (reused page)", want, got, wantErr, gotErr)
		})
	}
}

// FuzzDecodeConsumerPage checks the scanner against encoding/json: same
// error or same page, from a fresh page and from a reused one. Seeds: the
// recorded replies but the page of 256 (mutating and minimising 240 KB
// inputs stalls the fuzzer; TestDecodeRecorded has it), the cases above
// and testdata/fuzz.
func FuzzDecodeConsumerPage(f *testing.F) {
	rec := recorded(f)
	for _, b := range rec {
		if len(b) < 16<<10 {
			f.Add(b)
		}
	}
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in))
	}
	prev := rec["consumer_list_single_varied.json"]
	f.Fuzz(func(t *testing.T, b []byte) {
		want, got, wantErr, gotErr, _ := bothWays(nil, b)
		sameOutcome(t, "fresh page", want, got, wantErr, gotErr)
		want, got, wantErr, gotErr, _ = bothWays(prev, b)
		sameOutcome(t, "reused page", want, got, wantErr, gotErr)
	})
}

// BenchmarkDecodeConsumerList decodes a recorded page of 256 consumers
// from a 3-server cluster (the workload of cmd/bench-scale: config,
// metadata, delivered and ack floor, cluster with leader and replicas) into
// a reused page, as the sampler does.
func BenchmarkDecodeConsumerList(b *testing.B) {
	reply := recorded(b)["consumer_list_cluster_256.json"]
	for _, bc := range []struct {
		name   string
		decode func([]byte, *consumerPage) error
	}{
		{"decoder=encoding-json", decodeConsumerPageJSON},
		{"decoder=scan", decodeConsumerPage},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p consumerPage
			b.SetBytes(int64(len(reply)))
			b.ReportAllocs()
			for b.Loop() {
				p.reset()
				if err := bc.decode(reply, &p); err != nil || len(p.Items) != 256 {
					b.Fatalf("%d consumers, %v", len(p.Items), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/consumer")
		})
	}
}
