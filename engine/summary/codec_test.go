package summary

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// fillNode sets field i of n (a snapshot.Node) to a value that is not zero
// and differs per field, failing for a kind it does not know, so a new
// kind of field cannot slip past the round-trip tests.
func fillNode(t *testing.T, v reflect.Value, i int) {
	t.Helper()
	f := v.Field(i)
	name := v.Type().Field(i).Name
	switch {
	case f.Type() == reflect.TypeFor[time.Time]():
		f.Set(reflect.ValueOf(time.Unix(1_700_000_000+int64(i), int64(i)*1000+7)))
	case f.Type() == reflect.TypeFor[snapshot.NodeKey]():
		f.Set(reflect.ValueOf(snapshot.NodeKey{Stream: "keyS", Consumer: "keyC"}))
	default:
		switch f.Kind() {
		case reflect.String:
			f.SetString(fmt.Sprintf("%s-%d", strings.ToLower(name), i))
		case reflect.Int:
			f.SetInt(int64(i*1000 + 3))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.125)
		case reflect.Bool:
			f.SetBool(true)
		default:
			t.Fatalf("snapshot.Node.%s: kind %s has no test value; teach the codec and this test", name, f.Kind())
		}
	}
}

func roundTrip(t *testing.T, p *Part, maxChunk int) *Part {
	t.Helper()
	chunks, err := Encode(p, maxChunk)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	a := NewAssembler()
	var got *Part
	for i, c := range chunks {
		if len(c) > maxChunk {
			t.Fatalf("chunk %d has %d bytes, max %d", i, len(c), maxChunk)
		}
		q, err := a.Add(c, time.Now())
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if q != nil && i != len(chunks)-1 {
			t.Fatalf("part complete after chunk %d of %d", i+1, len(chunks))
		}
		got = q
	}
	if got == nil {
		t.Fatalf("part not complete after all %d chunks", len(chunks))
	}
	return got
}

// TestNodeRoundTripEveryField sets every field of snapshot.Node, all at
// once and each alone, and checks that it comes back: a field added to
// Node without codec support fails here.
func TestNodeRoundTripEveryField(t *testing.T) {
	typ := reflect.TypeFor[snapshot.Node]()
	var all snapshot.Node
	for i := range typ.NumField() {
		fillNode(t, reflect.ValueOf(&all).Elem(), i)
	}
	cases := map[string]snapshot.Node{"all": all}
	for i := range typ.NumField() {
		var n snapshot.Node
		fillNode(t, reflect.ValueOf(&n).Elem(), i)
		cases[typ.Field(i).Name] = n
	}
	for name, n := range cases {
		// The key is not sent: it is restored from stream and consumer.
		n.Key = snapshot.NodeKey{Stream: n.Stream, Consumer: n.Consumer}
		p := &Part{Member: "m", Seq: 1, Nodes: []snapshot.Node{n}}
		got := roundTrip(t, p, 1<<20)
		if !reflect.DeepEqual(got.Nodes, p.Nodes) {
			t.Errorf("%s: node changed in transit:\n got %+v\nwant %+v", name, got.Nodes[0], n)
		}
	}
	// Special values that must keep their bits.
	n := snapshot.Node{Stream: "s", Consumer: "c", ID: "c", AckRate: math.Copysign(0, -1), SecondsToDrain: -1,
		MessagesLost: -5, LagGrowthRate: math.Inf(-1), StallOnset: time.Unix(0, 0)}
	n.Key = snapshot.NodeKey{Stream: "s", Consumer: "c"}
	got := roundTrip(t, &Part{Nodes: []snapshot.Node{n}}, 1<<20).Nodes[0]
	if math.Float64bits(got.AckRate) != math.Float64bits(n.AckRate) || !reflect.DeepEqual(got, n) {
		t.Errorf("special values changed: got %+v want %+v", got, n)
	}
}

// testPart is a member's share as a busy system shows it: a fifth of the
// nodes busy with most rates set, the rest idle and mostly zero.
func testPart(member string, seq uint64, nodes int) *Part {
	r := rand.New(rand.NewPCG(seq, uint64(len(member))))
	p := &Part{Member: member, Seq: seq, At: time.Unix(1_700_000_000, int64(seq))}
	perStream := 50
	for i := 0; i < nodes; i++ {
		stream := fmt.Sprintf("ORDERS_%04d", i/perStream)
		if i%perStream == 0 {
			p.Owned = append(p.Owned, stream)
		}
		n := snapshot.Node{Stream: stream, Consumer: fmt.Sprintf("worker-%06d", i), Group: fmt.Sprintf("grp-%02d", i/perStream%20),
			StallThreshold: 30, ObservedSeconds: float64(r.IntN(86400)), SecondsToLoss: -1, LeaderChangedSeconds: -1,
			SecondsSinceStall: float64(r.IntN(86400))}
		n.ID = n.Consumer
		if i%5 == 0 {
			n.MessagesWaiting, n.NumPending, n.AckPending = r.IntN(5000), r.IntN(4000), r.IntN(1000)
			n.Redelivered, n.WaitingPulls = r.IntN(10), r.IntN(4)
			n.DeliveryRate, n.AckRate, n.ArrivalRate = r.Float64()*500, r.Float64()*500, r.Float64()*500
			n.LagGrowthRate, n.PublishRate = r.Float64()*10-5, r.Float64()*800
			n.AckRateBaseline, n.ArrivalRateBaseline, n.ArrivalRise = r.Float64()*500, r.Float64()*500, r.Float64()*2
			n.SecondsSinceLastAck, n.AckCadence, n.CadenceLearned = r.Float64(), r.Float64()*3, true
			n.TimeLagSeconds, n.SecondsToDrain, n.LagFloor = r.Float64()*20, r.Float64()*60, r.IntN(100)
			n.Lagging = r.IntN(4) == 0
			if r.IntN(50) == 0 {
				n.Stalled, n.StalledSeconds, n.StallOnset = true, 42, time.Unix(1_700_000_000, int64(i))
			}
		} else {
			n.Idle = true
		}
		n.Key = snapshot.NodeKey{Stream: n.Stream, Consumer: n.Consumer}
		p.Nodes = append(p.Nodes, n)
		if i%97 == 0 {
			p.Unobserved = append(p.Unobserved, snapshot.NodeKey{Stream: stream, Consumer: fmt.Sprintf("gone-%d", i)})
		}
	}
	return p
}

// TestChunksOutOfOrder splits a Part into many small chunks, so every list
// spans several, and feeds them shuffled.
func TestChunksOutOfOrder(t *testing.T) {
	p := testPart("member.with dots*>ü", 12, 3000)
	for i := range 400 { // more owned streams than one chunk holds
		p.Owned = append(p.Owned, fmt.Sprintf("ARCHIVE_%04d", i))
	}
	const maxChunk = 4096
	chunks, err := Encode(p, maxChunk)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 20 {
		t.Fatalf("only %d chunks of %d bytes; the test wants lists spanning chunks", len(chunks), maxChunk)
	}
	spans := map[string]bool{}
	for i, c := range chunks {
		if len(c) > maxChunk {
			t.Fatalf("chunk %d: %d bytes over %d", i, len(c), maxChunk)
		}
		d, err := decodeChunk(c)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if d.index != uint32(i) || d.count != uint32(len(chunks)) {
			t.Fatalf("chunk %d says %d/%d", i, d.index, d.count)
		}
		if len(d.owned) > 0 && len(d.nodes) > 0 {
			spans["owned+nodes"] = true
		}
		if len(d.owned) > 0 && i > 0 {
			spans["owned over chunks"] = true
		}
		if len(d.nodes) > 0 && len(d.unobserved) > 0 {
			spans["nodes+unobserved"] = true
		}
	}
	if len(spans) != 3 {
		t.Fatalf("lists did not share chunks: %v", spans)
	}
	r := rand.New(rand.NewPCG(1, 2))
	order := r.Perm(len(chunks))
	a := NewAssembler()
	var got *Part
	for k, i := range order {
		q, err := a.Add(chunks[i], time.Now())
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if q != nil && k != len(order)-1 {
			t.Fatalf("complete after %d of %d chunks", k+1, len(chunks))
		}
		got = q
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("assembled part differs from the one encoded")
	}
	// A duplicate after completion is ignored.
	if q, err := a.Add(chunks[0], time.Now()); q != nil || err != nil {
		t.Fatalf("duplicate chunk: %v, %v", q, err)
	}
}

func TestEncodeRecordTooLarge(t *testing.T) {
	p := &Part{Member: "m", Seq: 3, Owned: []string{"a", strings.Repeat("x", 500)}}
	_, err := Encode(p, 200)
	if err == nil || !strings.Contains(err.Error(), `owned stream "xxx`) {
		t.Fatalf("err = %v, want one naming the owned stream", err)
	}
	if _, err := Encode(&Part{Member: strings.Repeat("m", 300)}, 200); err == nil {
		t.Fatal("a header larger than a chunk encoded")
	}
}

func TestEmptyPart(t *testing.T) {
	p := &Part{Member: "m", Seq: 0}
	if got := roundTrip(t, p, 64); !reflect.DeepEqual(got, p) {
		t.Fatalf("got %+v want %+v", got, p)
	}
}

// TestAssemblerSeq: a newer Seq drops the older incomplete one, older ones
// are ignored, and a restarted member (lower Seq, later At) is accepted.
func TestAssemblerSeq(t *testing.T) {
	enc := func(seq uint64, at int64) [][]byte {
		p := testPart("m", seq, 200)
		p.At = time.Unix(at, 0)
		c, err := Encode(p, 2048)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) < 3 {
			t.Fatalf("%d chunks; want several", len(c))
		}
		return c
	}
	now := time.Now()
	a := NewAssembler()
	s5, s6 := enc(5, 100), enc(6, 101)
	for _, c := range s5[:len(s5)-1] {
		if p, err := a.Add(c, now); p != nil || err != nil {
			t.Fatalf("seq 5: %v %v", p, err)
		}
	}
	if p, err := a.Add(s6[0], now); p != nil || err != nil {
		t.Fatalf("seq 6: %v %v", p, err)
	}
	// Seq 5's last chunk no longer completes it: it was dropped.
	if p, err := a.Add(s5[len(s5)-1], now); p != nil || err != nil {
		t.Fatalf("seq 5 after 6: %v %v", p, err)
	}
	var got *Part
	for _, c := range s6[1:] {
		p, err := a.Add(c, now)
		if err != nil {
			t.Fatal(err)
		}
		got = p
	}
	if got == nil || got.Seq != 6 {
		t.Fatalf("seq 6 not assembled: %v", got)
	}
	for _, c := range enc(4, 99) {
		if p, err := a.Add(c, now); p != nil || err != nil {
			t.Fatalf("seq 4 after 6: %v %v", p, err)
		}
	}
	var restarted *Part
	for _, c := range enc(1, 200) {
		p, err := a.Add(c, now)
		if err != nil {
			t.Fatal(err)
		}
		restarted = p
	}
	if restarted == nil || restarted.Seq != 1 {
		t.Fatalf("restarted member's seq 1 not assembled: %v", restarted)
	}
}

// TestDecodeErrorsNameTheField cuts a chunk inside a node's float field.
func TestDecodeErrorsNameTheField(t *testing.T) {
	n := snapshot.Node{Stream: "s", Consumer: "c", ID: "c", ArrivalRate: 3.5}
	n.Key = snapshot.NodeKey{Stream: "s", Consumer: "c"}
	p := &Part{Member: "x", Seq: 12, Nodes: []snapshot.Node{n, n}}
	chunks, err := Encode(p, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	_, err = decodeChunk(chunks[0][:len(chunks[0])-3])
	want := `summary chunk 1/1 of member "x" seq 12: node record 1 at byte`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "float field arrivalRate: truncated") {
		t.Fatalf("err = %v, want %q ... float field arrivalRate: truncated", err, want)
	}
	bad := bytes.Clone(chunks[0])
	bad[0] = 9
	if _, err := decodeChunk(bad); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("err = %v, want version error", err)
	}
}

func TestToken(t *testing.T) {
	seen := map[string]string{}
	for _, m := range []string{"a", "engine-1_b", "a.b", "a b", "*", ">", "ü", "", "~61", "7e3631"} {
		tok := Token(m)
		if strings.ContainsAny(tok, ". *>\t\r\n") || tok == "" {
			t.Errorf("Token(%q) = %q: not one subject token", m, tok)
		}
		if o, dup := seen[tok]; dup {
			t.Errorf("Token(%q) = Token(%q) = %q", m, o, tok)
		}
		seen[tok] = m
	}
	if Token("engine-1_b") != "engine-1_b" {
		t.Errorf("plain name changed: %q", Token("engine-1_b"))
	}
}

func FuzzDecodeChunk(f *testing.F) {
	for _, p := range []*Part{testPart("m", 1, 3), {Member: "a.b", Seq: 9}} {
		chunks, err := Encode(p, 1<<16)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(chunks[0])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeChunk(data)
		if err != nil {
			return
		}
		// What decodes must encode again, and that encoding must be
		// stable: decode(encode(decode(x))) encodes to the same bytes.
		p := assemble(map[uint32]*chunk{0: c}, 1)
		first, err := Encode(p, 1<<30)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, err := decodeChunk(first[0])
		if err != nil {
			t.Fatalf("decode of re-encoded chunk: %v", err)
		}
		second, err := Encode(assemble(map[uint32]*chunk{0: c2}, 1), 1<<30)
		if err != nil {
			t.Fatalf("second re-encode: %v", err)
		}
		if !bytes.Equal(first[0], second[0]) {
			t.Fatalf("encoding not stable:\n%x\n%x", first[0], second[0])
		}
	})
}
