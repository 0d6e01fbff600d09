package flowsim

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// run simulates sc to its end and returns every snapshot.
func run(t *testing.T, sc Scenario) ([]flow.Snapshot, *Sim) {
	t.Helper()
	sim := New(sc)
	var out []flow.Snapshot
	for {
		snap, ok := sim.Next()
		if !ok {
			break
		}
		out = append(out, snap)
	}
	if err := sim.Err(); err != nil {
		t.Fatalf("%v\n%s", err, sc.Describe())
	}
	return out, sim
}

// sampleOf returns node id's sample in snap.
func sampleOf(snap flow.Snapshot, id string) (flow.ConsumerSample, bool) {
	for _, c := range snap.Consumers {
		if c.NodeID == id {
			return c, true
		}
	}
	return flow.ConsumerSample{}, false
}

func streamOf(snap flow.Snapshot, name string) flow.StreamSample {
	for _, s := range snap.Streams {
		if s.Name == name {
			return s
		}
	}
	return flow.StreamSample{}
}

func one(c Consumer, p Publish, faults ...Fault) Scenario {
	c.ID, c.Group, c.Stream = "n1", "g", "S"
	return Scenario{
		Seed:      7,
		Duration:  40 * time.Second,
		Streams:   []Stream{{Name: "S", Publish: p, InitialSeq: 1000}},
		Consumers: []Consumer{c},
		Faults:    faults,
	}
}

func TestCounters(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steady := Publish{Kind: Steady, Rate: 100}
	tests := []struct {
		name  string
		sc    Scenario
		check func(t *testing.T, snaps []flow.Snapshot)
	}{{
		name: "steady consumer keeps up",
		sc:   one(Consumer{}, steady),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			last := snaps[len(snaps)-1]
			c, _ := sampleOf(last, "n1")
			s := streamOf(last, "S")
			published := s.LastSeq - 1000
			// 40s at 100/s: Poisson, so within a few percent.
			if published < 3600 || published > 4400 {
				t.Errorf("published %d in 40s at 100/s", published)
			}
			first, _ := sampleOf(snaps[0], "n1")
			if c.NumPending != 0 || c.NumAckPending != 0 || c.NumWaiting != 1 {
				t.Errorf("pending %d, ack pending %d, waiting %d; want 0, 0, 1", c.NumPending, c.NumAckPending, c.NumWaiting)
			}
			if got := c.Delivered - first.Delivered; got != s.LastSeq-streamOf(snaps[0], "S").LastSeq {
				t.Errorf("delivered %d, not what was published", got)
			}
			if lag := c.At.Sub(c.LastAck); lag < 0 || lag > 100*time.Millisecond {
				t.Errorf("last ack %v before the sample", lag)
			}
		},
	}, {
		name: "slow consumer holds its buffer and falls behind",
		sc:   one(Consumer{Capacity: 50}, steady),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			c, _ := sampleOf(snaps[len(snaps)-1], "n1")
			// Prefetch is 2s of capacity: 100 held; the rest waits.
			if c.NumAckPending < 90 || c.NumAckPending > 100 {
				t.Errorf("ack pending %d, want about the prefetch of 100", c.NumAckPending)
			}
			if c.NumPending < 1500 || c.NumPending > 2500 {
				t.Errorf("pending %d after 40s 50/s short", c.NumPending)
			}
		},
	}, {
		name: "crash stops acks and pulls, restart resumes and redelivers",
		sc: one(Consumer{Capacity: 100, AckWait: 5 * time.Second, Ack: Ack{Kind: AckCount, Count: 300}}, Publish{Kind: Steady, Rate: 20},
			Fault{At: 10 * time.Second, Kind: Crash, Node: "n1"},
			Fault{At: 25 * time.Second, Kind: Restart, Node: "n1"}),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			var atCrash flow.ConsumerSample
			first, _ := sampleOf(snaps[0], "n1")
			for _, snap := range snaps {
				c, _ := sampleOf(snap, "n1")
				since := c.At.Sub(start)
				switch {
				case since > 11*time.Second && since < 24*time.Second:
					if atCrash.At.IsZero() {
						atCrash = c
					}
					if c.NumWaiting != 0 {
						t.Errorf("%v: %d pulls waiting while crashed", since, c.NumWaiting)
					}
					if !c.LastAck.Equal(atCrash.LastAck) || c.Delivered != atCrash.Delivered {
						t.Errorf("%v: acked or delivered while crashed", since)
					}
					if c.NumAckPending != atCrash.NumAckPending {
						t.Errorf("%v: ack pending %d changed from %d while crashed", since, c.NumAckPending, atCrash.NumAckPending)
					}
					if c.NumPending <= atCrash.NumPending && since > 13*time.Second {
						t.Errorf("%v: pending %d does not grow while crashed", since, c.NumPending)
					}
				case since > 26*time.Second:
					// The first ack waits for 300 to be processed: 3–4s.
					if c.NumWaiting != 1 || (since > 30*time.Second && !c.LastAck.After(atCrash.LastAck)) {
						t.Errorf("%v: not consuming after the restart", since)
					}
					// It holds up to 300 before acking, nothing more.
					if since > 35*time.Second && (c.NumPending > 0 || c.NumAckPending > 300) {
						t.Errorf("%v: still %d waiting long after the restart", since, c.NumPending+c.NumAckPending)
					}
				}
			}
			// 10s at 20/s, none acked yet with a count of 300.
			if atCrash.NumAckPending < 150 {
				t.Errorf("held only %d at the crash", atCrash.NumAckPending)
			}
			// Redeliveries raise the consumer sequence beyond the new
			// messages delivered: by what the crashed client held.
			last, _ := sampleOf(snaps[len(snaps)-1], "n1")
			if got := (last.Delivered - first.Delivered) - (last.DeliveredStream - first.DeliveredStream); got != atCrash.NumAckPending {
				t.Errorf("redelivered %d, want the %d held at the crash", got, atCrash.NumAckPending)
			}
		},
	}, {
		name: "batch acker acks every 3s",
		sc:   one(Consumer{Ack: Ack{Kind: AckInterval, Every: 3 * time.Second}}, Publish{Kind: Steady, Rate: 30}),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			var acks []time.Time
			maxHeld := uint64(0)
			for _, snap := range snaps {
				c, _ := sampleOf(snap, "n1")
				if len(acks) == 0 || !c.LastAck.Equal(acks[len(acks)-1]) {
					acks = append(acks, c.LastAck)
				}
				maxHeld = max(maxHeld, c.NumAckPending)
			}
			// The first is from before the run.
			for i := 2; i < len(acks); i++ {
				if d := acks[i].Sub(acks[i-1]); d < 3*time.Second-50*time.Millisecond || d > 3*time.Second+50*time.Millisecond {
					t.Errorf("acks %v apart, want 3s", d)
				}
			}
			if len(acks) < 12 {
				t.Errorf("%d distinct acks in 40s", len(acks))
			}
			if maxHeld < 60 || maxHeld > 130 {
				t.Errorf("held at most %d between acks; 3s of 30/s is 90", maxHeld)
			}
		},
	}, {
		name: "count acker acks once 50 are held",
		sc:   one(Consumer{Ack: Ack{Kind: AckCount, Count: 50}}, Publish{Kind: Steady, Rate: 25}),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			for _, snap := range snaps {
				c, _ := sampleOf(snap, "n1")
				if c.NumAckPending >= 55 {
					t.Errorf("%d held, over the count of 50", c.NumAckPending)
				}
			}
			c, _ := sampleOf(snaps[len(snaps)-1], "n1")
			if d := c.At.Sub(c.LastAck); d > 3*time.Second {
				t.Errorf("no ack for %v at 25/s with a count of 50", d)
			}
		},
	}, {
		name: "pauser neither processes nor acks while paused",
		sc:   one(Consumer{Capacity: 200, Pause: Pause{Every: 10 * time.Second, For: 3 * time.Second}}, Publish{Kind: Steady, Rate: 50}),
		check: func(t *testing.T, snaps []flow.Snapshot) {
			held := 0
			for _, snap := range snaps {
				c, _ := sampleOf(snap, "n1")
				if c.At.Sub(c.LastAck) > 2*time.Second {
					held++
				}
				if c.At.Sub(c.LastAck) > 3100*time.Millisecond {
					t.Errorf("silent %v, longer than a pause", c.At.Sub(c.LastAck))
				}
			}
			if held < 3 {
				t.Errorf("only %d samples inside a 3s pause in 40s", held)
			}
		},
	}, {
		name: "created late, deleted early",
		sc: Scenario{
			Seed: 3, Duration: 30 * time.Second,
			Streams: []Stream{{Name: "S", Publish: Publish{Kind: Steady, Rate: 10}, InitialSeq: 500}},
			Consumers: []Consumer{
				{ID: "late", Stream: "S", CreatedAt: 10 * time.Second},
				{ID: "early", Stream: "S", DeletedAt: 20 * time.Second},
			},
		},
		check: func(t *testing.T, snaps []flow.Snapshot) {
			for _, snap := range snaps {
				since := snap.At.Sub(start)
				late, hasLate := sampleOf(snap, "late")
				_, hasEarly := sampleOf(snap, "early")
				if hasLate != (since >= 10*time.Second) {
					t.Errorf("%v: late consumer present %v", since, hasLate)
				}
				if hasEarly != (since < 20*time.Second) {
					t.Errorf("%v: deleted consumer present %v", since, hasEarly)
				}
				if hasLate && (late.Created.Before(start.Add(10*time.Second)) || late.NumPending > 20) {
					t.Errorf("%v: late consumer created %v with %d pending", since, late.Created.Sub(start), late.NumPending)
				}
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snaps, _ := run(t, tc.sc)
			tc.check(t, snaps)
		})
	}
}

func TestDeterministic(t *testing.T) {
	sc, _ := Faulty(rand.New(rand.NewPCG(42, 1)))
	a, _ := run(t, sc)
	b, _ := run(t, sc)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same scenario ran twice differently")
	}
	sc2, _ := Faulty(rand.New(rand.NewPCG(42, 1)))
	if !reflect.DeepEqual(sc, sc2) {
		t.Fatal("the same seed drew different scenarios")
	}
}

func TestSampleJitter(t *testing.T) {
	snaps, _ := run(t, one(Consumer{}, Publish{Kind: Steady, Rate: 1}))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, snap := range snaps {
		d := snap.At.Sub(start) - time.Duration(i+1)*time.Second
		if d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("sample %d off its tick by %v", i, d)
		}
	}
}

// TestPropertyGenerators checks the generators against the
// simulation's ground truth: healthy nodes never fall behind (no message
// waits longer than its node's normal holding), faulty nodes do.
func TestPropertyGenerators(t *testing.T) {
	const healthyLag = 15 * time.Second
	for seed := range uint64(24) {
		sc := Healthy(rand.New(rand.NewPCG(seed, 1)))
		_, sim := run(t, sc)
		for _, c := range sc.Consumers {
			if l := sim.MaxTimeLag(c.ID); l > healthyLag {
				t.Errorf("healthy seed %d: node %s (%s) waited %v\n%s", seed, c.ID, c.Shape, l, sc.Describe())
			}
		}
	}
	for seed := range uint64(36) {
		sc, o := Faulty(rand.New(rand.NewPCG(seed, 2)))
		_, sim := run(t, sc)
		if o.Kind != KindOverload && o.Kind != KindNested {
			for _, id := range o.Background {
				if l := sim.MaxTimeLag(id); l > healthyLag {
					t.Errorf("%s seed %d: background node %s waited %v\n%s", o.Kind, seed, id, l, sc.Describe())
				}
			}
		}
		for _, id := range o.Nodes {
			if c := consumerOf(sc, id); c.Shape == shapeIdle {
				continue // a cut idle member has nothing to fall behind on
			}
			// A crashed or slowed busy node keeps work waiting.
			if l := sim.MaxTimeLag(id); l < 5*time.Second {
				t.Errorf("%s seed %d: faulty node %s never fell behind (max %v)", o.Kind, seed, id, l)
			}
		}
		if o.Kind == KindOverload || o.Kind == KindNested {
			behind := 0
			for _, id := range o.Overwhelmed {
				// Nodes sized for overload hold messages at most about 5s
				// when they keep up.
				if sim.MaxTimeLag(id) > 5*time.Second {
					behind++
				}
			}
			if 2*behind <= len(sc.Consumers) {
				t.Errorf("%s seed %d: only %d of %d nodes fell behind", o.Kind, seed, behind, len(sc.Consumers))
			}
		}
	}
}

func consumerOf(sc Scenario, id string) Consumer {
	for _, c := range sc.Consumers {
		if c.ID == id {
			return c
		}
	}
	return Consumer{}
}
