package sampler

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/happen-dev/happen/engine/flow"
)

func TestInvalidID(t *testing.T) {
	for _, tc := range []struct {
		in, why string
	}{
		{"orders-eu-1", ""},
		{"eu_west:2", ""},
		{"zürich", ""},
		{strings.Repeat("x", 128), ""},
		{"", "empty"},
		{" \t\n", "empty"},
		{strings.Repeat("x", 129), "longer than 128 bytes"},
		{"a\xffb", "not valid UTF-8"},
		{" lead", "contains whitespace"},
		{"trail ", "contains whitespace"},
		{"a\u00a0b", "contains whitespace"},
		{"a\x00b", "contains a control character"},
		{"a\x7fb", "contains a control character"},
		{"a.b", "contains '.'"},
		{"a*", "contains '*'"},
		{">", "contains '>'"},
	} {
		if got := invalidID(tc.in); got != tc.why {
			t.Errorf("invalidID(%q) = %q, want %q", tc.in, got, tc.why)
		}
	}
}

func TestIsInternal(t *testing.T) {
	for in, want := range map[string]bool{
		"KV_cfg": true, "OBJ_files": true, "ORDERS": false, "KV": false, "kv_cfg": false, "MY_KV_X": false, "happen_summaries": true,
	} {
		if got := isInternal(in); got != want {
			t.Errorf("isInternal(%q) = %v", in, got)
		}
	}
}

func TestAdvisoryKey(t *testing.T) {
	const pre = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED"
	for _, tc := range []struct {
		subject string
		want    flow.NodeKey
		ok      bool
	}{
		{pre + ".ORDERS.w1", flow.NodeKey{Stream: "ORDERS", Consumer: "w1"}, true},
		{pre + ".ORDERS", flow.NodeKey{}, false},
		{pre + ".ORDERS.", flow.NodeKey{}, false},
		{pre + "..w1", flow.NodeKey{}, false},
		{pre + ".A.B.C", flow.NodeKey{}, false},
		{"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.ORDERS.w1", flow.NodeKey{}, false},
	} {
		got, ok := advisoryKey(pre, tc.subject)
		if got != tc.want || ok != tc.ok {
			t.Errorf("advisoryKey(%q) = %v, %v; want %v, %v", tc.subject, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLastOfEach(t *testing.T) {
	type item struct{ name, pass string }
	name := func(i *item) string { return i.name }
	// Stably sorted by name: later passes come later within a name.
	in := []item{{"a", "1"}, {"a", "2"}, {"b", "1"}, {"c", "1"}, {"c", "2"}, {"c", "3"}}
	got := lastOfEach(in, name)
	want := []item{{"a", "2"}, {"b", "1"}, {"c", "3"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestCountNotIn(t *testing.T) {
	name := func(s *string) string { return *s }
	items := []string{"a", "b"}
	if n := countNotIn([]string{"b", "x", "y"}, items, name); n != 2 {
		t.Errorf("countNotIn = %d, want 2: an entry both listed and missing counts once", n)
	}
}

func TestMetadataDecoding(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want metadata
	}{
		{`null`, metadata{}},
		{`{}`, metadata{}},
		{` { } `, metadata{}},
		{`{"happen.node":"n1","happen.group":"eu","happen.ignore":"true"}`, metadata{node: "n1", group: "eu", hasNode: true, hasGroup: true, ignore: true}},
		{`{"_nats.ver":"2.12","happen.node":"n1"}`, metadata{node: "n1", hasNode: true}},
		{"{\n  \"happen.node\" : \"\",\n  \"happen.ignore\": \"false\"\n}", metadata{hasNode: true}},
		{`{"happen.ignore":"TRUE"}`, metadata{}},
		{`{"Happen.Node":"n1"}`, metadata{}},
		// Escapes take the slow path and come out decoded.
		{`{"happen.node":"a\u0001b","happen.group":"e\"u"}`, metadata{node: "a\x01b", group: `e"u`, hasNode: true, hasGroup: true}},
		{`{"happen\u002enode":"n1"}`, metadata{node: "n1", hasNode: true}},
		// Duplicate keys: the last wins, as with encoding/json.
		{`{"happen.node":"a","happen.node":"b"}`, metadata{node: "b", hasNode: true}},
	} {
		var got struct {
			M metadata `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(`{"metadata":`+tc.in+`}`), &got); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got.M != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.in, got.M, tc.want)
		}
	}
	var bad struct {
		M metadata `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(`{"metadata":{"happen.node":1}}`), &bad); err == nil {
		t.Error("metadata with a number value decoded without error")
	}
}
