// Package record writes and reads engine recordings: every sample the engine
// took, so that `happen replay` can run it again through any ruleset with
// the engine's own code.
//
// # Format
//
// A recording is JSON lines. The first line of every file is a header:
//
//	{"happen":"recording","v":1,"interval":"1s","start":"2026-12-03T10:00:00.123Z","instance":"host-1"}
//
// Each line after it is one tick. A tick whose sample succeeded holds the
// flow.Snapshot the sampler produced:
//
//	{"t":1764756000123000000,"s":[{"n":"ORDERS","at":...,"ls":4200,"m":4200}],
//	 "c":[{"s":"ORDERS","c":"eu-1","g":"eu","at":...,"p":12,"d":4188,...}],
//	 "u":[["ORDERS","eu-9"]],"us":["AUDIT"]}
//
// An engine sharing the streams with others (happen engine --share) also
// writes "sh":{"l":[...],"o":[...]}, the streams it saw listed and those it
// owned. A tick whose sample failed (the engine was blind) holds its time
// and the error:
//
//	{"t":1764756001123000000,"blind":"list streams: not connected to NATS"}
//
// Times are Unix nanoseconds and durations nanoseconds, so a recording
// gives back exactly what was sampled; fields that are zero are left out.
// The short field names are those of consumerLine and streamLine below.
// `{"dropped":N}` says the recorder had to drop the N ticks before the next
// line because the disk did not keep up.
//
// A header found after the first line of a file starts another engine run
// appended to the same file (the engine was restarted with the same
// --record). Rotated files repeat their run's header.
//
// # Files
//
// The Writer appends to FILE and rotates by size like logrotate: FILE
// becomes FILE.1, FILE.1 becomes FILE.2 and so on, and the oldest beyond
// the number kept is removed. The Reader, given FILE, reads FILE.N ...
// FILE.1 and then FILE: the whole recording in time order.
//
// # Cost to the engine
//
// Record runs on the tick. It encodes the tick's line by hand (about 1µs
// a consumer, no allocation; BenchmarkEncode) and queues it for a
// goroutine the Writer owns, which writes and flushes whenever the queue
// is empty. Writing on the tick instead (BenchmarkWriteSync) costs about as
// much while the page cache takes the writes, but puts every stall of a
// slow or full disk into the tick; the queue bounds what such a stall can
// cost to ticks dropped from the recording, counted and marked in it.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/happen-dev/happen/engine/flow"
)

// Version is the format version this package writes. Readers refuse a
// newer one rather than misread it.
const Version = 1

// magic is the header's "happen" value: what tells a recording from any
// other JSON lines file.
const magic = "recording"

// Header is the first line of every recording file.
type Header struct {
	Version  int
	Interval time.Duration // the engine's sampling interval
	Start    time.Time     // when the engine run began recording
	Instance string        // the engine instance (its sender is happen-engine/<Instance>)
}

type headerLine struct {
	Happen   string `json:"happen"`
	V        int    `json:"v"`
	Interval string `json:"interval"`
	Start    string `json:"start"`
	Instance string `json:"instance,omitempty"`
}

// sameRun reports whether h and o head files of one engine run: a rotated
// file repeats its run's header.
func (h Header) sameRun(o Header) bool {
	return h.Start.Equal(o.Start) && h.Instance == o.Instance && h.Interval == o.Interval
}

func encodeHeader(h Header) []byte {
	b, _ := json.Marshal(headerLine{
		Happen: magic, V: h.Version, Interval: h.Interval.String(),
		Start: h.Start.UTC().Format(time.RFC3339Nano), Instance: h.Instance,
	})
	return append(b, '\n')
}

// line is any line of a recording; which fields are set says which kind.
type line struct {
	// header
	Happen   string `json:"happen,omitempty"`
	V        int    `json:"v,omitempty"`
	Interval string `json:"interval,omitempty"`
	Start    string `json:"start,omitempty"`
	Instance string `json:"instance,omitempty"`

	// tick
	T     int64          `json:"t,omitempty"`
	S     []streamLine   `json:"s,omitempty"`
	C     []consumerLine `json:"c,omitempty"`
	U     [][2]string    `json:"u,omitempty"`  // unobserved consumers: [stream, consumer]
	US    []string       `json:"us,omitempty"` // unobserved streams
	Sh    *shareLine     `json:"sh,omitempty"` // the engine's share, when engines share the streams
	Sig   *signalsLine   `json:"sig,omitempty"`
	Blind *string        `json:"blind,omitempty"`

	Dropped uint64 `json:"dropped,omitempty"`
}

// shareLine is flow.Share: the streams listed, and those the engine owned.
type shareLine struct {
	L []string `json:"l"`
	O []string `json:"o"`
}

// signalsLine is flow.Signals: what the servers said during the tick.
type signalsLine struct {
	Sv bool           `json:"sv,omitempty"` // Servers
	D  []serverDown   `json:"d,omitempty"`
	RL int            `json:"rl,omitempty"` // RoutesLost
	E  []electionLine `json:"e,omitempty"`
}

type serverDown struct {
	N  string `json:"n"`
	S  int64  `json:"s,omitempty"`  // Since
	LH int64  `json:"lh,omitempty"` // LastHeard
	A  bool   `json:"a,omitempty"`  // Announced
}

type electionLine struct {
	S  string `json:"s"`
	C  string `json:"c"`
	L  string `json:"l,omitempty"`
	At int64  `json:"at,omitempty"`
}

func toSignalsLine(sig *flow.Signals) *signalsLine {
	if !sig.Servers && len(sig.Down) == 0 && sig.RoutesLost == 0 && len(sig.Elected) == 0 {
		return nil
	}
	l := &signalsLine{Sv: sig.Servers, RL: sig.RoutesLost}
	for _, d := range sig.Down {
		l.D = append(l.D, serverDown{N: d.Name, S: nanos(d.Since), LH: nanos(d.LastHeard), A: d.Announced})
	}
	for _, e := range sig.Elected {
		l.E = append(l.E, electionLine{S: e.Key.Stream, C: e.Key.Consumer, L: e.Leader, At: nanos(e.At)})
	}
	return l
}

func (l *signalsLine) signals() flow.Signals {
	if l == nil {
		return flow.Signals{}
	}
	sig := flow.Signals{Servers: l.Sv, RoutesLost: l.RL}
	for _, d := range l.D {
		sig.Down = append(sig.Down, flow.ServerDown{Name: d.N, Since: fromNanos(d.S), LastHeard: fromNanos(d.LH), Announced: d.A})
	}
	for _, e := range l.E {
		sig.Elected = append(sig.Elected, flow.Election{Key: flow.NodeKey{Stream: e.S, Consumer: e.C}, Leader: e.L, At: fromNanos(e.At)})
	}
	return sig
}

type streamLine struct {
	N   string `json:"n"`
	At  int64  `json:"at,omitempty"`
	LS  uint64 `json:"ls,omitempty"`  // LastSeq
	M   uint64 `json:"m,omitempty"`   // Msgs
	FS  uint64 `json:"fs,omitempty"`  // FirstSeq
	FT  int64  `json:"ft,omitempty"`  // FirstTime
	LT  int64  `json:"lt,omitempty"`  // LastTime
	B   uint64 `json:"b,omitempty"`   // Bytes
	MM  int64  `json:"mm,omitempty"`  // MaxMsgs
	MB  int64  `json:"mb,omitempty"`  // MaxBytes
	MA  int64  `json:"ma,omitempty"`  // MaxAge
	MPS int64  `json:"mps,omitempty"` // MaxMsgsPerSubject
	DN  bool   `json:"dn,omitempty"`  // DiscardNew
}

// consumerLine holds every field of flow.ConsumerSample.
type consumerLine struct {
	S   string  `json:"s"`            // Key.Stream
	C   string  `json:"c"`            // Key.Consumer
	ID  *string `json:"id,omitempty"` // NodeID, only when it is not the consumer name
	G   string  `json:"g,omitempty"`  // Group
	At  int64   `json:"at,omitempty"`
	Cr  int64   `json:"cr,omitempty"`  // Created
	P   uint64  `json:"p,omitempty"`   // NumPending
	AP  uint64  `json:"ap,omitempty"`  // NumAckPending
	RD  uint64  `json:"rd,omitempty"`  // NumRedelivered
	W   uint64  `json:"w,omitempty"`   // NumWaiting
	D   uint64  `json:"d,omitempty"`   // Delivered
	DS  uint64  `json:"ds,omitempty"`  // DeliveredStream
	AF  uint64  `json:"af,omitempty"`  // AckFloor
	AFS uint64  `json:"afs,omitempty"` // AckFloorStream
	LD  int64   `json:"ld,omitempty"`  // LastDelivery
	LA  int64   `json:"la,omitempty"`  // LastAck
	L   string  `json:"l,omitempty"`   // Leader
	Pu  bool    `json:"pu,omitempty"`  // Push
	PB  bool    `json:"pb,omitempty"`  // PushBound
	Pa  bool    `json:"pa,omitempty"`  // Paused
	AN  bool    `json:"an,omitempty"`  // AckNone
	AW  int64   `json:"aw,omitempty"`  // AckWait
	MD  uint64  `json:"md,omitempty"`  // MaxDeliveries
	Nk  uint64  `json:"nk,omitempty"`  // Naks
	Tm  uint64  `json:"tm,omitempty"`  // Terminated
	Fl  bool    `json:"fl,omitempty"`  // Filtered
	OS  uint64  `json:"os,omitempty"`  // OldestSeq
	OT  int64   `json:"ot,omitempty"`  // OldestTime
}

// nanos is t as Unix nanoseconds, 0 for the zero time (which has none).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos, in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// appendSnapshot appends the tick line of s to b. It writes what
// json.Marshal would write for the line struct (a test holds it to that),
// by hand: reflection made it the largest cost of a recorded tick.
func appendSnapshot(b []byte, s *flow.Snapshot) []byte {
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, nanos(s.At), 10)
	if len(s.Streams) > 0 {
		b = append(b, `,"s":[`...)
		for i := range s.Streams {
			st := &s.Streams[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"n":`...)
			b = appendString(b, st.Name)
			b = appendInt(b, `"at"`, nanos(st.At))
			b = appendUint(b, `"ls"`, st.LastSeq)
			b = appendUint(b, `"m"`, st.Msgs)
			b = appendUint(b, `"fs"`, st.FirstSeq)
			b = appendInt(b, `"ft"`, nanos(st.FirstTime))
			b = appendInt(b, `"lt"`, nanos(st.LastTime))
			b = appendUint(b, `"b"`, st.Bytes)
			b = appendInt(b, `"mm"`, st.MaxMsgs)
			b = appendInt(b, `"mb"`, st.MaxBytes)
			b = appendInt(b, `"ma"`, int64(st.MaxAge))
			b = appendInt(b, `"mps"`, st.MaxMsgsPerSubject)
			b = appendBool(b, `"dn"`, st.DiscardNew)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(s.Consumers) > 0 {
		b = append(b, `,"c":[`...)
		for i := range s.Consumers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendConsumer(b, &s.Consumers[i])
		}
		b = append(b, ']')
	}
	if len(s.Unobserved) > 0 {
		b = append(b, `,"u":[`...)
		for i, k := range s.Unobserved {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendString(b, k.Stream)
			b = append(b, ',')
			b = appendString(b, k.Consumer)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if len(s.UnobservedStreams) > 0 {
		b = appendStrings(append(b, `,"us":`...), s.UnobservedStreams)
	}
	if s.Share != nil {
		b = appendStrings(append(b, `,"sh":{"l":`...), s.Share.Listed)
		b = appendStrings(append(b, `,"o":`...), s.Share.Owned)
		b = append(b, '}')
	}
	// Signals are small and most ticks have none but the flag: plain
	// encoding/json costs nothing worth writing by hand.
	if sl := toSignalsLine(&s.Signals); sl != nil {
		enc, err := json.Marshal(sl)
		if err == nil { // it cannot fail on these types
			b = append(b, `,"sig":`...)
			b = append(b, enc...)
		}
	}
	return append(b, '}', '\n')
}

// appendStrings appends names as a JSON array.
func appendStrings(b []byte, names []string) []byte {
	b = append(b, '[')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, name)
	}
	return append(b, ']')
}

// appendConsumer appends the consumerLine of c, fields in its order.
func appendConsumer(b []byte, c *flow.ConsumerSample) []byte {
	b = append(b, `{"s":`...)
	b = appendString(b, c.Key.Stream)
	b = append(b, `,"c":`...)
	b = appendString(b, c.Key.Consumer)
	if c.NodeID != c.Key.Consumer {
		b = append(b, `,"id":`...)
		b = appendString(b, c.NodeID)
	}
	if c.Group != "" {
		b = append(b, `,"g":`...)
		b = appendString(b, c.Group)
	}
	b = appendInt(b, `"at"`, nanos(c.At))
	b = appendInt(b, `"cr"`, nanos(c.Created))
	b = appendUint(b, `"p"`, c.NumPending)
	b = appendUint(b, `"ap"`, c.NumAckPending)
	b = appendUint(b, `"rd"`, c.NumRedelivered)
	b = appendUint(b, `"w"`, c.NumWaiting)
	b = appendUint(b, `"d"`, c.Delivered)
	b = appendUint(b, `"ds"`, c.DeliveredStream)
	b = appendUint(b, `"af"`, c.AckFloor)
	b = appendUint(b, `"afs"`, c.AckFloorStream)
	b = appendInt(b, `"ld"`, nanos(c.LastDelivery))
	b = appendInt(b, `"la"`, nanos(c.LastAck))
	if c.Leader != "" {
		b = append(b, `,"l":`...)
		b = appendString(b, c.Leader)
	}
	b = appendBool(b, `"pu"`, c.Push)
	b = appendBool(b, `"pb"`, c.PushBound)
	b = appendBool(b, `"pa"`, c.Paused)
	b = appendBool(b, `"an"`, c.AckNone)
	b = appendInt(b, `"aw"`, int64(c.AckWait))
	b = appendUint(b, `"md"`, c.MaxDeliveries)
	b = appendUint(b, `"nk"`, c.Naks)
	b = appendUint(b, `"tm"`, c.Terminated)
	b = appendBool(b, `"fl"`, c.Filtered)
	b = appendUint(b, `"os"`, c.OldestSeq)
	b = appendInt(b, `"ot"`, nanos(c.OldestTime))
	return append(b, '}')
}

// appendInt, appendUint and appendBool append ,"key":value unless the
// value is zero, as omitempty does.
func appendInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',')
	b = append(b, key...)
	b = append(b, ':')
	return strconv.AppendInt(b, v, 10)
}

func appendUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',')
	b = append(b, key...)
	b = append(b, ':')
	return strconv.AppendUint(b, v, 10)
}

func appendBool(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	b = append(b, ',')
	b = append(b, key...)
	return append(b, `:true`...)
}

// appendString appends s as a JSON string. Names and metadata are plain
// text; anything else takes encoding/json's path, which escapes as it must.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			raw, _ := json.Marshal(s)
			return append(b, raw...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendBlind appends the line of a failed sample at at to b.
func appendBlind(b []byte, at time.Time, err error) []byte {
	msg := "sampling failed"
	if err != nil && err.Error() != "" {
		msg = err.Error()
	}
	l := line{T: nanos(at), Blind: &msg}
	return appendLine(b, &l)
}

func appendDropped(b []byte, n uint64) []byte {
	return appendLine(b, &line{Dropped: n})
}

func appendLine(b []byte, l *line) []byte {
	raw, err := json.Marshal(l)
	if err != nil {
		// Plain strings, numbers and bools: this cannot fail.
		panic(fmt.Sprintf("record: encode line: %v", err))
	}
	b = append(b, raw...)
	return append(b, '\n')
}

// Kind says what an Entry holds.
type Kind int

const (
	// Tick is a successful sample: Entry.Snapshot.
	Tick Kind = iota + 1
	// Blind is a failed sample: Entry.At and Entry.Err.
	Blind
	// Run is the start of another engine run appended to the recording:
	// Entry.Header. The first run's header is Reader.Header.
	Run
	// Dropped says the recorder dropped Entry.Dropped ticks here.
	Dropped
)

func (k Kind) String() string {
	switch k {
	case Tick:
		return "tick"
	case Blind:
		return "blind"
	case Run:
		return "run"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Entry is one line of a recording after its file's header.
type Entry struct {
	Kind     Kind
	Snapshot flow.Snapshot // Tick
	At       time.Time     // Tick (the snapshot's time) and Blind
	Err      string        // Blind: why the sample failed
	Header   Header        // Run
	Dropped  uint64        // Dropped
	Pos      string        // file:line, for messages
}

var errNotRecording = errors.New("not a happen recording (its first line is no recording header)")

// decode parses one line. A header comes back as Kind Run.
func decode(raw []byte) (Entry, error) {
	var l line
	if err := json.Unmarshal(raw, &l); err != nil {
		return Entry{}, err
	}
	switch {
	case l.Happen != "":
		if l.Happen != magic {
			return Entry{}, fmt.Errorf("header says %q, want %q", l.Happen, magic)
		}
		if l.V < 1 || l.V > Version {
			return Entry{}, fmt.Errorf("format version %d; this happen reads versions 1 to %d", l.V, Version)
		}
		iv, err := time.ParseDuration(l.Interval)
		if err != nil || iv <= 0 {
			return Entry{}, fmt.Errorf("header interval %q is not a positive duration", l.Interval)
		}
		start, err := time.Parse(time.RFC3339Nano, l.Start)
		if err != nil {
			return Entry{}, fmt.Errorf("header start %q: %w", l.Start, err)
		}
		return Entry{Kind: Run, Header: Header{Version: l.V, Interval: iv, Start: start.UTC(), Instance: l.Instance}}, nil
	case l.Dropped > 0:
		return Entry{Kind: Dropped, Dropped: l.Dropped}, nil
	case l.T == 0:
		return Entry{}, errors.New("line has no time (t)")
	case l.Blind != nil:
		return Entry{Kind: Blind, At: fromNanos(l.T), Err: *l.Blind}, nil
	}
	s := flow.Snapshot{At: fromNanos(l.T), UnobservedStreams: l.US, Signals: l.Sig.signals()}
	if l.Sh != nil {
		s.Share = &flow.Share{Listed: l.Sh.L, Owned: l.Sh.O}
	}
	if len(l.S) > 0 {
		s.Streams = make([]flow.StreamSample, len(l.S))
		for i, st := range l.S {
			if st.N == "" {
				return Entry{}, fmt.Errorf("stream %d has no name", i)
			}
			s.Streams[i] = flow.StreamSample{
				Name: st.N, At: fromNanos(st.At), LastSeq: st.LS, Msgs: st.M,
				FirstSeq: st.FS, FirstTime: fromNanos(st.FT), LastTime: fromNanos(st.LT), Bytes: st.B,
				MaxMsgs: st.MM, MaxBytes: st.MB, MaxAge: time.Duration(st.MA), MaxMsgsPerSubject: st.MPS, DiscardNew: st.DN,
			}
		}
	}
	if len(l.C) > 0 {
		s.Consumers = make([]flow.ConsumerSample, len(l.C))
		for i := range l.C {
			cl := &l.C[i]
			if cl.S == "" || cl.C == "" {
				return Entry{}, fmt.Errorf("consumer %d has no stream or name", i)
			}
			c := flow.ConsumerSample{
				Key:    flow.NodeKey{Stream: cl.S, Consumer: cl.C},
				NodeID: cl.C, Group: cl.G,
				At: fromNanos(cl.At), Created: fromNanos(cl.Cr),
				NumPending: cl.P, NumAckPending: cl.AP, NumRedelivered: cl.RD, NumWaiting: cl.W,
				Delivered: cl.D, DeliveredStream: cl.DS, AckFloor: cl.AF, AckFloorStream: cl.AFS,
				LastDelivery: fromNanos(cl.LD), LastAck: fromNanos(cl.LA), Leader: cl.L,
				Push: cl.Pu, PushBound: cl.PB, Paused: cl.Pa, AckNone: cl.AN, AckWait: time.Duration(cl.AW),
				MaxDeliveries: cl.MD, Naks: cl.Nk, Terminated: cl.Tm,
				Filtered: cl.Fl, OldestSeq: cl.OS, OldestTime: fromNanos(cl.OT),
			}
			if cl.ID != nil {
				c.NodeID = *cl.ID
			}
			s.Consumers[i] = c
		}
	}
	if len(l.U) > 0 {
		s.Unobserved = make([]flow.NodeKey, len(l.U))
		for i, k := range l.U {
			s.Unobserved[i] = flow.NodeKey{Stream: k[0], Consumer: k[1]}
		}
	}
	return Entry{Kind: Tick, Snapshot: s, At: s.At}, nil
}
