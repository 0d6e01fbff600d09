package summary

import (
	"testing"
	"time"
)

const benchNodes = 10_000

func BenchmarkEncode10k(b *testing.B) {
	p := testPart("member-1", 1, benchNodes)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		chunks, err := Encode(p, DefaultMaxChunk)
		if err != nil {
			b.Fatal(err)
		}
		size = 0
		for _, c := range chunks {
			size += len(c)
		}
	}
	b.ReportMetric(float64(size)/benchNodes, "bytes/node")
}

func BenchmarkDecode10k(b *testing.B) {
	p := testPart("member-1", 1, benchNodes)
	chunks, err := Encode(p, DefaultMaxChunk)
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, c := range chunks {
		size += len(c)
	}
	b.ReportAllocs()
	for b.Loop() {
		a := NewAssembler()
		var got *Part
		for _, c := range chunks {
			if got, err = a.Add(c, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		if got == nil || len(got.Nodes) != benchNodes {
			b.Fatal("part not assembled")
		}
	}
	b.ReportMetric(float64(size)/benchNodes, "bytes/node")
	b.ReportMetric(float64(len(chunks)), "chunks")
}

// BenchmarkDecode10kInterned is BenchmarkDecode10k as the collector
// decodes, with the strings of the member's earlier parts interned: what
// a leader pays a tick for each member's 10,000 nodes.
func BenchmarkDecode10kInterned(b *testing.B) {
	p := testPart("member-1", 1, benchNodes)
	chunks, err := Encode(p, DefaultMaxChunk)
	if err != nil {
		b.Fatal(err)
	}
	intern := map[string]string{}
	a := NewAssembler()
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		p.Seq = seq
		b.StopTimer()
		chunks, err = Encode(p, DefaultMaxChunk)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var got *Part
		for _, c := range chunks {
			ch, err := decodeChunkIntern(c, intern)
			if err != nil {
				b.Fatal(err)
			}
			if got, err = a.add(ch, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		if got == nil || len(got.Nodes) != benchNodes {
			b.Fatal("part not assembled")
		}
	}
}
