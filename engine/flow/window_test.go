package flow

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWindowCountsExact checks the compact window against a plain list of
// samples: whatever the counts (small steps, rare counters, ages, jumps
// past 32 bits, counters that fall, clears), every live sample reads back
// exactly what was pushed, and the window trims like the list.
func TestWindowCountsExact(t *testing.T) {
	const span = int64(10 * time.Second)
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		var w window
		var ref []point
		var refC []counts
		var c counts
		at := epoch.UnixNano()
		for step := range 300 {
			switch k := r.IntN(100); {
			case k < 2:
				w.clear()
				ref, refC = nil, nil
			case k < 4:
				c.delivered += math.MaxUint32 + uint64(r.IntN(3)) // a jump past 32 bits
			case k < 6:
				c.acked = uint64(r.IntN(10)) // a counter that fell
			case k < 10:
				c.naks += uint64(r.IntN(3))
				c.lost += uint64(r.IntN(2))
			case k < 12:
				c.age = r.Float64() * 100
			case k < 14:
				c.age = 0
			}
			c.delivered += uint64(r.IntN(100))
			c.acked += uint64(r.IntN(100))
			c.arrived += uint64(r.IntN(100))
			c.maxDel += uint64(r.IntN(2) * r.IntN(2))
			c.term += uint64(r.IntN(2) * r.IntN(2) * r.IntN(2))
			// Mostly a second apart, now and then a burst of dense samples.
			gap := int64(time.Second)
			if r.IntN(10) == 0 {
				gap = int64(r.IntN(100)) * int64(time.Millisecond)
			}
			at += gap
			p := point{at: at, waiting: float64(r.IntN(1000))}
			w.push(p, c)
			w.trim(span)
			ref, refC = append(ref, p), append(refC, c)
			for len(ref) >= 2 && ref[1].at <= at-span {
				ref, refC = ref[1:], refC[1:]
			}
			if w.len() != len(ref) {
				t.Fatalf("seed %d step %d: window holds %d samples, want %d", seed, step, w.len(), len(ref))
			}
			for i := range ref {
				if got := w.pts[int(w.lo)+i]; got != ref[i] {
					t.Fatalf("seed %d step %d: sample %d is %+v, want %+v", seed, step, i, got, ref[i])
				}
				if got := w.counts(w.lo + int32(i)); got != refC[i] {
					t.Fatalf("seed %d step %d: counts %d are %+v, want %+v", seed, step, i, got, refC[i])
				}
			}
			if _, first := w.oldest(); first != refC[0] {
				t.Fatalf("seed %d step %d: oldest %+v, want %+v", seed, step, first, refC[0])
			}
			if _, last, _ := w.newest(); last != c {
				t.Fatalf("seed %d step %d: newest %+v, want %+v", seed, step, last, c)
			}
		}
	}
}

// TestWindowCompact checks what a steady node's window keeps: a buffer of
// minWindow samples with 32-bit offsets, no rare offsets while the rare
// counters stand still, and no allocation per push.
func TestWindowCompact(t *testing.T) {
	var w window
	var c counts
	at := epoch.UnixNano()
	push := func() {
		at += int64(time.Second)
		c.delivered += 50
		c.acked += 50
		c.arrived += 50
		w.push(point{at: at, waiting: 3}, c)
		w.trim(int64(10 * time.Second))
	}
	for range 100 {
		push()
	}
	if len(w.pts) != minWindow || len(w.hot) != minWindow || w.rare != nil || w.cnt != nil {
		t.Errorf("steady window keeps %d points, %d offsets, rare columns %v, %d whole counts; want %d, %d, false, 0",
			len(w.pts), len(w.hot), w.rare != nil, len(w.cnt), minWindow, minWindow)
	}
	if allocs := testing.AllocsPerRun(100, push); allocs != 0 {
		t.Errorf("steady push allocates %v times", allocs)
	}
	// An age alone needs no rare offsets.
	c.age = 5
	push()
	if w.rare == nil || w.rare.ages == nil || w.rare.offs != nil {
		t.Errorf("an age alone keeps rare columns %+v; want ages alone", w.rare)
	}
	c.age = 0
	// A dense spell grows the buffer; once it is over, the buffer shrinks.
	for range 100 {
		at += int64(100 * time.Millisecond)
		w.push(point{at: at}, c)
		w.trim(int64(10 * time.Second))
	}
	if len(w.pts) <= minWindow {
		t.Fatalf("100 samples in 10s fit a buffer of %d", len(w.pts))
	}
	for range 100 {
		push()
	}
	if len(w.pts) != minWindow {
		t.Errorf("after the dense spell the buffer stays at %d, want %d", len(w.pts), minWindow)
	}
}
