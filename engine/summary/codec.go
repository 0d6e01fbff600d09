package summary

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// The chunk format, version 3. Every chunk decodes on its own:
//
//	version   byte
//	member    uvarint length, bytes
//	seq       uvarint
//	flags     uvarint: flagAt
//	at        varint unix nanos, only with flagAt
//	index     4 bytes big endian (fixed width so the header's size is known
//	count     4 bytes big endian  before the chunk count is)
//	nodes     4 bytes big endian: node records in this chunk, so a decoder
//	          allocates them once
//	records   until the end: a tag byte, then the record
//
// Strings marked "ref" go through a per-chunk string table: uvarint 0 is
// followed by the string (uvarint length, bytes) and adds it to the table;
// n > 0 repeats the table's nth string. Stream and group names repeat
// across a stream's nodes; consumer names and ids do not and are written
// as plain strings.
//
// A node record is a presence mask (uvarint) of the fields that are not
// zero, then those fields in mask order: stream (ref, always), consumer
// (always), group (ref), id (only when it differs from consumer), the
// bools packed into one uvarint, StallOnset (varint unix nanos), the ints
// (zigzag varints) and the floats (8 bytes little endian IEEE bits, so
// they round-trip exactly, -0 and NaN included).
const version = 3

const (
	recOwned byte = 1 // string
	// 2 was the listed streams of version 2: the leader lists them itself.
	recNode       byte = 3 // node record
	recUnobserved byte = 4 // stream (ref), consumer
)

const (
	// 1 << 0 was flagRateKnown of version 2: the leader sums the streams'
	// rates from its own tick now.
	flagAt = 1 << 1
)

// Node record mask bits; the ints and floats follow from bitInts on.
const (
	bitGroup = iota
	bitID
	bitFlags
	bitStallOnset
	bitInts
)

const (
	nInts     = 8
	nFloats   = 22
	nBools    = 11
	bitFloats = bitInts + nInts
	nBits     = bitFloats + nFloats
)

// Field names as rules know them, for decode errors.
var (
	intNames = [nInts]string{"messagesWaiting", "numPending", "ackPending", "redelivered",
		"waitingPulls", "lagFloor", "recentStalls", "messagesLost"}
	floatNames = [nFloats]string{"deliveryRate", "ackRate", "arrivalRate", "lagGrowthRate",
		"publishRate", "ackRateBaseline", "arrivalRateBaseline", "arrivalRise", "nakRate",
		"maxDeliveriesRate", "terminatedRate", "secondsSinceLastAck", "stalledSeconds",
		"ackCadence", "stallThreshold", "secondsSinceStall", "observedSeconds",
		"timeLagSeconds", "secondsToDrain", "lossRate", "secondsToLoss", "leaderChangedSeconds"}
)

func nodeInts(n *snapshot.Node) [nInts]*int {
	return [nInts]*int{&n.MessagesWaiting, &n.NumPending, &n.AckPending, &n.Redelivered,
		&n.WaitingPulls, &n.LagFloor, &n.RecentStalls, &n.MessagesLost}
}

func nodeFloats(n *snapshot.Node) [nFloats]*float64 {
	return [nFloats]*float64{&n.DeliveryRate, &n.AckRate, &n.ArrivalRate, &n.LagGrowthRate,
		&n.PublishRate, &n.AckRateBaseline, &n.ArrivalRateBaseline, &n.ArrivalRise, &n.NakRate,
		&n.MaxDeliveriesRate, &n.TerminatedRate, &n.SecondsSinceLastAck, &n.StalledSeconds,
		&n.AckCadence, &n.StallThreshold, &n.SecondsSinceStall, &n.ObservedSeconds,
		&n.TimeLagSeconds, &n.SecondsToDrain, &n.LossRate, &n.SecondsToLoss, &n.LeaderChangedSeconds}
}

func nodeBools(n *snapshot.Node) [nBools]*bool {
	return [nBools]*bool{&n.Stalled, &n.Lagging, &n.CadenceLearned, &n.Idle, &n.FallingBehind,
		&n.Warming, &n.TimeLagEstimated, &n.RetentionLimited, &n.Push, &n.PushBound, &n.Paused}
}

// DefaultMaxChunk is the chunk size a Publisher uses unless told
// otherwise: a quarter of JetStream's default 1 MB max payload, so a
// chunk fits any server's limit with room for headers and a busy member's
// Part still takes only a handful of messages.
const DefaultMaxChunk = 256 << 10

// Encode splits p into chunks of at most maxChunk bytes each. Records fill
// the chunks in order (owned, nodes, unobserved), so any list may
// span chunks. A Part with nothing in its lists is one header-only chunk.
// A record that does not fit an otherwise empty chunk is an error naming
// it.
func Encode(p *Part, maxChunk int) ([][]byte, error) {
	e := &encoder{max: maxChunk}
	e.header(p)
	if len(e.head) > maxChunk {
		return nil, fmt.Errorf("summary of member %q seq %d: header of %d bytes exceeds the chunk size %d", p.Member, p.Seq, len(e.head), maxChunk)
	}
	e.begin()
	for i := range p.Owned {
		if err := e.record(p, recOwned, i); err != nil {
			return nil, err
		}
	}
	for i := range p.Nodes {
		if err := e.record(p, recNode, i); err != nil {
			return nil, err
		}
	}
	for i := range p.Unobserved {
		if err := e.record(p, recUnobserved, i); err != nil {
			return nil, err
		}
	}
	e.close()
	if uint64(len(e.chunks)) > math.MaxUint32 {
		return nil, fmt.Errorf("summary of member %q seq %d: %d chunks", p.Member, p.Seq, len(e.chunks))
	}
	for i, c := range e.chunks {
		binary.BigEndian.PutUint32(c[e.idxOff:], uint32(i))
		binary.BigEndian.PutUint32(c[e.idxOff+4:], uint32(len(e.chunks)))
	}
	return e.chunks, nil
}

type encoder struct {
	max    int
	head   []byte // the header with index and count zero
	idxOff int    // where index, count and nodes sit in head
	nodes  uint32 // node records in the current chunk
	chunks [][]byte
	cur    []byte
	table  map[string]uint64 // the current chunk's strings: 1-based refs
	added  []string          // table entries the current record added
}

func (e *encoder) header(p *Part) {
	b := []byte{version}
	b = appendString(b, p.Member)
	b = binary.AppendUvarint(b, p.Seq)
	var flags uint64
	if !p.At.IsZero() {
		flags |= flagAt
	}
	b = binary.AppendUvarint(b, flags)
	if !p.At.IsZero() {
		b = binary.AppendVarint(b, p.At.UnixNano())
	}
	e.idxOff = len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	e.head = b
}

// close ends the current chunk, writing how many nodes it holds.
func (e *encoder) close() {
	binary.BigEndian.PutUint32(e.cur[e.idxOff+8:], e.nodes)
	e.chunks = append(e.chunks, e.cur)
}

// begin starts a chunk with the header and an empty string table.
func (e *encoder) begin() {
	e.nodes = 0
	e.cur = make([]byte, len(e.head), min(e.max, 64<<10))
	copy(e.cur, e.head)
	if e.table == nil {
		e.table = make(map[string]uint64)
	} else {
		clear(e.table)
	}
}

// record appends record i of the kind, starting a new chunk when the
// current one cannot hold it.
func (e *encoder) record(p *Part, kind byte, i int) error {
	for {
		start := len(e.cur)
		e.added = e.added[:0]
		e.cur = append(e.cur, kind)
		switch kind {
		case recOwned:
			e.cur = appendString(e.cur, p.Owned[i])
		case recNode:
			e.node(&p.Nodes[i])
		case recUnobserved:
			e.ref(p.Unobserved[i].Stream)
			e.cur = appendString(e.cur, p.Unobserved[i].Consumer)
		}
		if len(e.cur) <= e.max {
			if kind == recNode {
				e.nodes++
			}
			return nil
		}
		size := len(e.cur) - start
		e.cur = e.cur[:start]
		for _, s := range e.added {
			delete(e.table, s)
		}
		if start == len(e.head) {
			return fmt.Errorf("summary of member %q seq %d: %s: record of %d bytes does not fit a chunk of %d bytes with its %d-byte header",
				p.Member, p.Seq, describe(p, kind, i), size, e.max, len(e.head))
		}
		e.close()
		e.begin()
	}
}

func describe(p *Part, kind byte, i int) string {
	switch kind {
	case recOwned:
		return fmt.Sprintf("owned stream %q", p.Owned[i])
	case recNode:
		return fmt.Sprintf("node %s", p.Nodes[i].Key)
	default:
		return fmt.Sprintf("unobserved node %s", p.Unobserved[i])
	}
}

func (e *encoder) ref(s string) {
	if r, ok := e.table[s]; ok {
		e.cur = binary.AppendUvarint(e.cur, r)
		return
	}
	e.cur = append(e.cur, 0)
	e.cur = appendString(e.cur, s)
	e.table[s] = uint64(len(e.table) + 1)
	e.added = append(e.added, s)
}

func (e *encoder) node(n *snapshot.Node) {
	var mask uint64
	if n.Group != "" {
		mask |= 1 << bitGroup
	}
	if n.ID != n.Consumer {
		mask |= 1 << bitID
	}
	var flags uint64
	for i, b := range nodeBools(n) {
		if *b {
			flags |= 1 << i
		}
	}
	if flags != 0 {
		mask |= 1 << bitFlags
	}
	if !n.StallOnset.IsZero() {
		mask |= 1 << bitStallOnset
	}
	ints := nodeInts(n)
	for i, v := range ints {
		if *v != 0 {
			mask |= 1 << (bitInts + i)
		}
	}
	floats := nodeFloats(n)
	for i, v := range floats {
		if math.Float64bits(*v) != 0 {
			mask |= 1 << (bitFloats + i)
		}
	}
	e.cur = binary.AppendUvarint(e.cur, mask)
	e.ref(n.Stream)
	e.cur = appendString(e.cur, n.Consumer)
	if mask&(1<<bitGroup) != 0 {
		e.ref(n.Group)
	}
	if mask&(1<<bitID) != 0 {
		e.cur = appendString(e.cur, n.ID)
	}
	if flags != 0 {
		e.cur = binary.AppendUvarint(e.cur, flags)
	}
	if mask&(1<<bitStallOnset) != 0 {
		e.cur = binary.AppendVarint(e.cur, n.StallOnset.UnixNano())
	}
	for _, v := range ints {
		if *v != 0 {
			e.cur = binary.AppendVarint(e.cur, int64(*v))
		}
	}
	for _, v := range floats {
		if bits := math.Float64bits(*v); bits != 0 {
			e.cur = binary.LittleEndian.AppendUint64(e.cur, bits)
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// chunk is one decoded chunk.
type chunk struct {
	member       string
	seq          uint64
	at           time.Time
	index, count uint32
	owned        []string
	nodes        []snapshot.Node
	unobserved   []snapshot.NodeKey
}

var errTruncated = errors.New("truncated")

// reader reads a chunk; every read checks the bytes left.
type reader struct {
	b     []byte
	off   int
	table []string
	// intern, if not nil, holds strings decoded before: a member sends the
	// same consumer names every tick, and a string found here costs no
	// allocation.
	intern map[string]string
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		return 0, errTruncated
	}
	if n < 0 {
		return 0, errors.New("varint overflows 64 bits")
	}
	r.off += n
	return v, nil
}

func (r *reader) varint() (int64, error) {
	v, n := binary.Varint(r.b[r.off:])
	if n == 0 {
		return 0, errTruncated
	}
	if n < 0 {
		return 0, errors.New("varint overflows 64 bits")
	}
	r.off += n
	return v, nil
}

func (r *reader) fixed(n int) ([]byte, error) {
	if len(r.b)-r.off < n {
		return nil, errTruncated
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) float() (float64, error) {
	b, err := r.fixed(8)
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

func (r *reader) str() (string, error) {
	n, err := r.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)-r.off) {
		return "", fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b)-r.off)
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	if r.intern == nil {
		return string(b), nil
	}
	if s, ok := r.intern[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	r.intern[s] = s
	return s, nil
}

func (r *reader) ref() (string, error) {
	k, err := r.uvarint()
	if err != nil {
		return "", err
	}
	if k == 0 {
		s, err := r.str()
		if err != nil {
			return "", err
		}
		r.table = append(r.table, s)
		return s, nil
	}
	if k > uint64(len(r.table)) {
		return "", fmt.Errorf("string ref %d beyond the chunk's %d strings", k, len(r.table))
	}
	return r.table[k-1], nil
}

// intOf converts a decoded varint to int, refusing what does not fit (on
// 32-bit platforms).
func intOf(v int64) (int, bool) {
	return int(v), int64(int(v)) == v
}

// decodeChunk decodes one chunk. It never panics: every length is checked
// against the bytes left, and errors say which field of which record is
// wrong.
func decodeChunk(data []byte) (*chunk, error) { return decodeChunkIntern(data, nil) }

// decodeChunkIntern is decodeChunk taking strings from intern, and adding
// the new ones to it.
func decodeChunkIntern(data []byte, intern map[string]string) (*chunk, error) {
	r := &reader{b: data, intern: intern}
	c := &chunk{}
	herr := func(field string, err error) error {
		return fmt.Errorf("summary chunk: header field %s: %w", field, err)
	}
	v, err := r.byte()
	if err != nil {
		return nil, herr("version", err)
	}
	if v != version {
		return nil, fmt.Errorf("summary chunk: version %d, want %d", v, version)
	}
	if c.member, err = r.str(); err != nil {
		return nil, herr("member", err)
	}
	if c.seq, err = r.uvarint(); err != nil {
		return nil, herr("seq", err)
	}
	flags, err := r.uvarint()
	if err != nil {
		return nil, herr("flags", err)
	}
	if flags&^flagAt != 0 {
		return nil, herr("flags", fmt.Errorf("unknown bits %#x", flags))
	}
	if flags&flagAt != 0 {
		ns, err := r.varint()
		if err != nil {
			return nil, herr("at", err)
		}
		c.at = time.Unix(0, ns)
	}
	ic, err := r.fixed(12)
	if err != nil {
		return nil, herr("chunk index", err)
	}
	c.index = binary.BigEndian.Uint32(ic)
	c.count = binary.BigEndian.Uint32(ic[4:])
	nodes := binary.BigEndian.Uint32(ic[8:])
	if c.count == 0 || c.index >= c.count {
		return nil, fmt.Errorf("summary chunk of member %q seq %d: index %d of %d chunks", c.member, c.seq, c.index, c.count)
	}
	werr := func(err error) error {
		return fmt.Errorf("summary chunk %d/%d of member %q seq %d: %w", c.index+1, c.count, c.member, c.seq, err)
	}
	// A node record takes at least its tag, mask, stream ref and consumer
	// length: a count beyond what the bytes left can hold is not believed
	// for the allocation, and fails the check after the records.
	if n := min(int(nodes), (len(r.b)-r.off)/minNodeRecord); n > 0 {
		c.nodes = make([]snapshot.Node, 0, n)
	}
	for r.off < len(r.b) {
		at := r.off
		tag, _ := r.byte()
		switch tag {
		case recOwned:
			s, err := r.str()
			if err != nil {
				return nil, werr(fmt.Errorf("owned stream %d at byte %d: %w", len(c.owned), at, err))
			}
			c.owned = append(c.owned, s)
		case recNode:
			c.nodes = append(c.nodes, snapshot.Node{})
			if err := r.node(&c.nodes[len(c.nodes)-1]); err != nil {
				return nil, werr(fmt.Errorf("node record %d at byte %d: %w", len(c.nodes)-1, at, err))
			}
		case recUnobserved:
			var k snapshot.NodeKey
			if k.Stream, err = r.ref(); err != nil {
				return nil, werr(fmt.Errorf("unobserved record %d at byte %d: stream: %w", len(c.unobserved), at, err))
			}
			if k.Consumer, err = r.str(); err != nil {
				return nil, werr(fmt.Errorf("unobserved record %d at byte %d: consumer: %w", len(c.unobserved), at, err))
			}
			c.unobserved = append(c.unobserved, k)
		default:
			return nil, werr(fmt.Errorf("unknown record tag %d at byte %d", tag, at))
		}
	}
	if uint32(len(c.nodes)) != nodes {
		return nil, werr(fmt.Errorf("header says %d nodes, the chunk holds %d", nodes, len(c.nodes)))
	}
	return c, nil
}

// minNodeRecord is the fewest bytes a node record takes.
const minNodeRecord = 4

func (r *reader) node(n *snapshot.Node) error {
	mask, err := r.uvarint()
	if err != nil {
		return fmt.Errorf("field mask: %w", err)
	}
	if mask>>nBits != 0 {
		return fmt.Errorf("field mask %#x has unknown bits", mask)
	}
	if n.Stream, err = r.ref(); err != nil {
		return fmt.Errorf("string field stream: %w", err)
	}
	if n.Consumer, err = r.str(); err != nil {
		return fmt.Errorf("string field consumer: %w", err)
	}
	n.Key = snapshot.NodeKey{Stream: n.Stream, Consumer: n.Consumer}
	n.ID = n.Consumer
	if mask&(1<<bitGroup) != 0 {
		if n.Group, err = r.ref(); err != nil {
			return fmt.Errorf("string field group: %w", err)
		}
	}
	if mask&(1<<bitID) != 0 {
		if n.ID, err = r.str(); err != nil {
			return fmt.Errorf("string field id: %w", err)
		}
	}
	if mask&(1<<bitFlags) != 0 {
		flags, err := r.uvarint()
		if err != nil {
			return fmt.Errorf("flags: %w", err)
		}
		if flags>>nBools != 0 {
			return fmt.Errorf("flags %#x have unknown bits", flags)
		}
		for i, b := range nodeBools(n) {
			*b = flags&(1<<i) != 0
		}
	}
	if mask&(1<<bitStallOnset) != 0 {
		ns, err := r.varint()
		if err != nil {
			return fmt.Errorf("time field stallOnset: %w", err)
		}
		n.StallOnset = time.Unix(0, ns)
	}
	for i, p := range nodeInts(n) {
		if mask&(1<<(bitInts+i)) == 0 {
			continue
		}
		v, err := r.varint()
		if err != nil {
			return fmt.Errorf("int field %s: %w", intNames[i], err)
		}
		var ok bool
		if *p, ok = intOf(v); !ok {
			return fmt.Errorf("int field %s: %d out of range", intNames[i], v)
		}
	}
	for i, p := range nodeFloats(n) {
		if mask&(1<<(bitFloats+i)) == 0 {
			continue
		}
		if *p, err = r.float(); err != nil {
			return fmt.Errorf("float field %s: %w", floatNames[i], err)
		}
	}
	return nil
}
