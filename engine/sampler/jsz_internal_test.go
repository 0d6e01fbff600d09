package sampler

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// jszBody is a JSZ reply as a server sends it for n consumers over
// streams streams, without configs.
func jszBody(n, streams int) []byte {
	var b strings.Builder
	b.WriteString(`{"server":{"name":"s0","host":"127.0.0.1","id":"NX","ver":"2.15.2","jetstream":true,"flags":7,"seq":26,"time":"2026-12-03T20:26:09.536403573Z"},"data":{"memory":0,"storage":34,"server_id":"NX","now":"2026-12-03T20:26:09.53620999Z","config":{"max_memory":1,"max_storage":1,"store_dir":"/tmp/x","sync_interval":120000000000,"strict":true},"limits":{},"streams":1,"consumers":1,"messages":1,"bytes":34,"account_details":[{"name":"APP","id":"APP","memory":0,"storage":34,"api":{"level":0,"total":3,"errors":0},"stream_detail":[`)
	for s := range streams {
		if s > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"BENCH%03d","created":"2026-12-03T20:26:09.327319963Z","cluster":{"leader":"s0"},"state":{"messages":1000,"bytes":34000,"first_seq":1,"first_ts":"2026-12-03T20:26:09.334192236Z","last_seq":1000,"last_ts":"2026-12-03T20:26:09.334192236Z","num_subjects":100,"consumer_count":%d},"consumer_detail":[`, s, n/streams)
		for c := range n / streams {
			if c > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"stream_name":"BENCH%03d","name":"c%06d","created":"2026-12-03T20:26:09.3314586Z","delivered":{"consumer_seq":1234,"stream_seq":5678,"last_active":"2026-12-03T20:26:09.3314586Z"},"ack_floor":{"consumer_seq":1233,"stream_seq":5677,"last_active":"2026-12-03T20:26:09.3314586Z"},"num_ack_pending":1,"num_redelivered":0,"num_waiting":1,"num_pending":0,"ts":"2026-12-03T20:26:09.536243593Z"}`, s, s*1000+c)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}],"total":1}}`)
	return []byte(b.String())
}

// BenchmarkDecodeJSZ decodes one server's report of 1,000 consumers.
func BenchmarkDecodeJSZ(b *testing.B) {
	body := jszBody(1000, 10)
	b.Logf("%d bytes, %.0f B/consumer", len(body), float64(len(body))/1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for _, dec := range []struct {
		name string
		fn   func([]byte, *jszReply) error
	}{
		{"encoding-json", func(b []byte, r *jszReply) error { *r = jszReply{}; return json.Unmarshal(b, r) }},
		{"scan", decodeJSZ},
	} {
		b.Run("decoder="+dec.name, func(b *testing.B) {
			var r jszReply
			for b.Loop() {
				if err := dec.fn(body, &r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/consumer")
		})
	}
}

// FuzzDecodeJSZ checks the scanner against encoding/json: whatever it
// decodes, encoding/json decodes to the same value without error.
func FuzzDecodeJSZ(f *testing.F) {
	f.Add(jszBody(3, 1))
	f.Add(jszBody(4, 2))
	f.Add([]byte(`{"server":{"name":"s1"},"data":{"disabled":true,"now":"2026-12-03T20:26:09Z"}}`))
	f.Add([]byte(`{"server":{"name":"s1"},"error":{"code":500,"description":"x"}}`))
	f.Add([]byte(`{"server":{"name":"s1"},"data":{"meta_cluster":{"leader":"s0","replicas":[{"name":"s0","offline":true},null]},"account_details":[null,{"id":"A","stream_detail":[]}]}}`))
	f.Add([]byte(`{"data":{"account_details":[{"stream_detail":[{"name":"S","cluster":null,"state":null,"consumer_detail":null}]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want jszReply
		errJSON := json.Unmarshal(b, &want)
		var got jszReply
		if !scanJSZ(b, &got) {
			return
		}
		if errJSON != nil {
			t.Fatalf("scanner decoded what encoding/json refuses (%v): %q", errJSON, b)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("scanner and encoding/json differ on %q:\nencoding/json %+v\nscanner       %+v", b, want, got)
		}
	})
}

// TestScanJSZRealReply decodes a reply shaped as nats-server sends it with
// the scanner itself, not by falling back.
func TestScanJSZRealReply(t *testing.T) {
	var r jszReply
	if !scanJSZ(jszBody(20, 2), &r) {
		t.Fatal("the scanner gave up on a well-formed reply")
	}
	if r.Server.Name != "s0" || len(r.Data.Accounts) != 1 || len(r.Data.Accounts[0].Streams) != 2 ||
		len(r.Data.Accounts[0].Streams[1].Consumers) != 10 || r.Data.Accounts[0].Streams[1].Consumers[9].Delivered.Stream != 5678 {
		t.Fatalf("decoded %+v", r)
	}
}
