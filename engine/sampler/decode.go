package sampler

import (
	"encoding/json"
	"math"
	"time"
	"unicode/utf8"
)

// Decoding the CONSUMER.LIST replies is the sampler's largest CPU cost at
// scale: encoding/json validates a reply in one pass, then decodes it by
// reflection in another. scanConsumerPage reads the fields a sample uses
// in one pass over the bytes and skips the rest.
//
// It accepts only what it can decode exactly as encoding/json would; on
// anything else (a number that is not a plain integer, a field name with
// escapes, upper case or duplicated, a type mismatch, an API error,
// invalid JSON) it gives up and the reply goes through encoding/json,
// which decodes it or reports the error. It never returns a value
// encoding/json would not: FuzzDecodeConsumerPage checks it against
// encoding/json. The rare string with escapes or invalid UTF-8, and the
// metadata object, are handed to the same code encoding/json would call.

// decodeReply decodes a list reply into into.
func decodeReply(b []byte, into any) error {
	if p, ok := into.(*consumerPage); ok {
		return decodeConsumerPage(b, p)
	}
	return json.Unmarshal(b, into)
}

// decodeConsumerPage decodes a CONSUMER.LIST reply into p, which has been
// reset.
func decodeConsumerPage(b []byte, p *consumerPage) error {
	if scanConsumerPage(b, p) {
		return nil
	}
	return decodeConsumerPageJSON(b, p)
}

// decodeConsumerPageJSON is the encoding/json path, for what the scanner
// gives up on.
func decodeConsumerPageJSON(b []byte, p *consumerPage) error {
	p.reset()
	return json.Unmarshal(b, p)
}

// scanConsumerPage decodes b into p and reports whether it could.
// On false, p holds partial results and must be reset.
func scanConsumerPage(b []byte, p *consumerPage) bool {
	s := scanner{b: b}
	s.page(p)
	if !s.bad {
		s.space()
		if s.i != len(s.b) {
			s.bad = true
		}
	}
	return !s.bad
}

// maxSkipDepth bounds the nesting of skipped values; deeper ones go to
// encoding/json, which allows more.
const maxSkipDepth = 200

// scanner reads JSON from b at i. Once bad is set every method returns at
// once and the result is abandoned.
type scanner struct {
	b       []byte
	i       int
	bad     bool
	leaders [4]string // leaders read so far: a page's consumers share a few
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (s *scanner) peek() byte {
	s.space()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// null consumes a null if one is next.
func (s *scanner) null() bool {
	if s.peek() != 'n' {
		return false
	}
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	s.bad = true
	return false
}

// object reads an object, calling field with each key, which must read
// the value. A key is passed only if it has no escapes; field reports
// which of up to 64 known fields it is (bit), or -1 for one to skip, so a
// duplicate known field gives up: encoding/json would merge it.
func (s *scanner) object(field func(key []byte) int) {
	if s.peek() != '{' {
		s.bad = true
		return
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return
	}
	var seen uint64
	for !s.bad {
		key, ok := s.plain()
		if !ok {
			s.bad = true
			return
		}
		if s.peek() != ':' {
			s.bad = true
			return
		}
		s.i++
		if bit := field(key); bit >= 0 {
			if seen&(1<<bit) != 0 {
				s.bad = true
				return
			}
			seen |= 1 << bit
		}
		if !s.more('}') {
			return
		}
	}
}

// unknown skips the value of a key that is not a field. encoding/json
// matches field names without regard to case, so a key that might fold to
// a field's name (upper case or non-ASCII) gives up.
func (s *scanner) unknown(key []byte) int {
	for _, c := range key {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			s.bad = true
			return -1
		}
	}
	s.skip(0)
	return -1
}

// plain reads a string without escapes, returning its bytes in place. It
// reports false for a string with escapes or control characters, or not
// a string.
func (s *scanner) plain() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	for j < len(s.b) && plainByte[s.b[j]] {
		j++
	}
	if j < len(s.b) && s.b[j] == '"' {
		s.i = j + 1
		return s.b[start:j], true
	}
	return nil, false
}

// plainByte holds the bytes that may stand in a string as themselves:
// not a quote, a backslash or a control character.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string into *v; null leaves it.
func (s *scanner) str(v *string) {
	if s.null() || s.bad {
		return
	}
	if s.peek() != '"' {
		s.bad = true
		return
	}
	start := s.i
	if b, ok := s.plain(); ok && utf8.Valid(b) {
		*v = string(b)
		return
	}
	// Escapes, or invalid UTF-8 that encoding/json replaces: rare enough
	// to let encoding/json unquote this one string.
	s.i = start
	s.skipString()
	if s.bad {
		return
	}
	if err := json.Unmarshal(s.b[start:s.i], v); err != nil {
		s.bad = true
	}
}

// strings reads an array of strings into *v, reusing its array; null sets
// it to nil, as encoding/json does.
func (s *scanner) strings(v *[]string) {
	if s.null() || s.bad {
		*v = nil
		return
	}
	if s.peek() != '[' {
		s.bad = true
		return
	}
	s.i++
	out := (*v)[:0]
	if out == nil {
		out = []string{}
	}
	if s.peek() == ']' {
		s.i++
		*v = out
		return
	}
	for !s.bad {
		if s.peek() != '"' { // encoding/json would keep "" for a null
			s.bad = true
			return
		}
		out = append(out, "")
		s.str(&out[len(out)-1])
		if !s.more(']') {
			if !s.bad {
				*v = out
			}
			return
		}
	}
}

// boolean reads true or false into *v; null leaves it.
func (s *scanner) boolean(v *bool) {
	if s.null() || s.bad {
		return
	}
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*v = true
		s.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*v = false
		s.i += 5
	default:
		s.bad = true
	}
}

// digits reads a JSON integer (no fraction or exponent, which encoding/json
// refuses for integer fields) and returns its magnitude and sign.
func (s *scanner) digits() (uint64, bool) {
	s.space()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n uint64
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if n > (math.MaxUint64-d)/10 {
			s.bad = true
			return 0, false
		}
		n = n*10 + d
		s.i++
	}
	switch {
	case s.i == start, // no digits
		s.i-start > 1 && s.b[start] == '0', // leading zero: not JSON
		s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E'):
		s.bad = true
	}
	return n, neg
}

// uint reads an unsigned integer into *v; null leaves it.
func (s *scanner) uint(v *uint64) {
	if s.null() || s.bad {
		return
	}
	n, neg := s.digits()
	if neg { // even -0: strconv.ParseUint refuses a sign
		s.bad = true
	}
	if !s.bad {
		*v = n
	}
}

// int reads a signed integer into *v; null leaves it.
func (s *scanner) int(v *int64) {
	if s.null() || s.bad {
		return
	}
	n, neg := s.digits()
	switch {
	case s.bad:
	case !neg && n <= math.MaxInt64:
		*v = int64(n)
	case neg && n <= 1<<63:
		*v = int64(-n) // -(1<<63) wraps to itself
	default:
		s.bad = true
	}
}

// intNative reads into an int, refusing what does not fit it.
func (s *scanner) intNative(v *int) {
	var n int64
	s.int(&n)
	if n < math.MinInt || n > math.MaxInt {
		s.bad = true
		return
	}
	if !s.bad {
		*v = int(n)
	}
}

// time reads a time the way encoding/json does, through
// time.Time.UnmarshalJSON on the quoted string; null leaves it.
func (s *scanner) time(v *time.Time) {
	if s.null() || s.bad {
		return
	}
	start := s.i
	if _, ok := s.plain(); !ok {
		s.bad = true
		return
	}
	if err := v.UnmarshalJSON(s.b[start:s.i]); err != nil {
		s.bad = true
	}
}

// skip reads any JSON value, checking it is valid.
// more steps past what follows an item of an object or array: true at a
// comma (another item comes), false at the closing bracket or on anything
// else, which marks the input bad.
func (s *scanner) more(closing byte) bool {
	switch s.peek() {
	case ',':
		s.i++
		return true
	case closing:
		s.i++
		return false
	}
	s.bad = true
	return false
}

func (s *scanner) skip(depth int) {
	if depth > maxSkipDepth {
		s.bad = true
		return
	}
	switch c := s.peek(); {
	case c == '{':
		s.i++
		if s.peek() == '}' {
			s.i++
			return
		}
		for !s.bad {
			s.skipString()
			if s.peek() != ':' {
				s.bad = true
				return
			}
			s.i++
			s.skip(depth + 1)
			if !s.more('}') {
				return
			}
		}
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return
		}
		for !s.bad {
			s.skip(depth + 1)
			if !s.more(']') {
				return
			}
		}
	case c == '"':
		s.skipString()
	case c == 't' || c == 'f':
		var b bool
		s.boolean(&b)
	case c == 'n':
		s.null()
	case c == '-' || ('0' <= c && c <= '9'):
		s.skipNumber()
	default:
		s.bad = true
	}
}

// skipString reads a string, checking its escapes. encoding/json does not
// check the UTF-8 of what it skips, so neither does this.
func (s *scanner) skipString() {
	if s.peek() != '"' {
		s.bad = true
		return
	}
	for j := s.i + 1; j < len(s.b); j++ {
		for j < len(s.b) && plainByte[s.b[j]] {
			j++
		}
		if j >= len(s.b) {
			break
		}
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return
		case c < 0x20:
			s.bad = true
			return
		case c == '\\':
			j++
			if j >= len(s.b) {
				s.bad = true
				return
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					s.bad = true
					return
				}
				for _, h := range s.b[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						s.bad = true
						return
					}
				}
				j += 4
			default:
				s.bad = true
				return
			}
		}
	}
	s.bad = true
}

// skipNumber reads any JSON number.
func (s *scanner) skipNumber() {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		s.bad = true
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.bad = true
			return
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.bad = true
			return
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	s.i = i
}

// page reads a consumer list reply.
func (s *scanner) page(p *consumerPage) {
	s.object(func(key []byte) int {
		switch string(key) {
		case "error":
			// Rare, and decoded into nats.go's type: encoding/json's.
			if !s.null() {
				s.bad = true
			}
			p.Error = nil
			return 0
		case "total":
			s.intNative(&p.Total)
			return 1
		case "offset":
			s.intNative(&p.Offset)
			return 2
		case "missing":
			s.strings(&p.Missing)
			return 3
		case "consumers":
			s.consumers(p)
			return 4
		}
		return s.unknown(key)
	})
}

// consumers reads the array of consumer infos into p.Items, reusing its
// elements, which reset has zeroed.
func (s *scanner) consumers(p *consumerPage) {
	if s.null() || s.bad {
		p.Items = nil
		return
	}
	if s.peek() != '[' {
		s.bad = true
		return
	}
	s.i++
	items := p.Items[:0]
	if items == nil {
		items = []consumerInfo{}
	}
	defer func() { p.Items = items }()
	if s.peek() == ']' {
		s.i++
		return
	}
	for !s.bad {
		items = append(items, consumerInfo{})
		s.consumer(&items[len(items)-1])
		if !s.more(']') {
			return
		}
	}
}

func (s *scanner) consumer(c *consumerInfo) {
	if s.null() || s.bad {
		return
	}
	s.object(func(key []byte) int {
		switch string(key) {
		case "name":
			s.str(&c.Name)
			return 0
		case "created":
			s.time(&c.Created)
			return 1
		case "config":
			s.config(c)
			return 2
		case "delivered":
			s.sequence(&c.Delivered)
			return 3
		case "ack_floor":
			s.sequence(&c.AckFloor)
			return 4
		case "num_ack_pending":
			s.int(&c.NumAckPending)
			return 5
		case "num_redelivered":
			s.int(&c.NumRedelivered)
			return 6
		case "num_waiting":
			s.int(&c.NumWaiting)
			return 7
		case "num_pending":
			s.uint(&c.NumPending)
			return 8
		case "push_bound":
			s.boolean(&c.PushBound)
			return 9
		case "paused":
			s.boolean(&c.Paused)
			return 10
		case "ts":
			s.time(&c.TimeStamp)
			return 11
		case "cluster":
			if !s.null() && !s.bad {
				s.object(func(key []byte) int {
					if string(key) == "leader" {
						s.leaderName(&c.Cluster.Leader)
						return 0
					}
					return s.unknown(key)
				})
			}
			return 12
		}
		return s.unknown(key)
	})
}

func (s *scanner) config(c *consumerInfo) {
	if s.null() || s.bad {
		return
	}
	cfg := &c.Config
	s.object(func(key []byte) int {
		switch string(key) {
		case "deliver_subject":
			s.str(&cfg.DeliverSubject)
			return 0
		case "ack_policy":
			s.ackPolicy(&cfg.AckPolicy)
			return 1
		case "ack_wait":
			s.int(&cfg.AckWait)
			return 2
		case "metadata":
			s.metadata(&cfg.Metadata)
			return 3
		case "filter_subject":
			s.str(&cfg.FilterSubject)
			return 4
		case "filter_subjects":
			s.strings(&cfg.FilterSubjects)
			return 5
		}
		return s.unknown(key)
	})
}

// leaderName reads a consumer's leader, sharing the string with an
// earlier consumer's on the same server.
func (s *scanner) leaderName(v *string) {
	start := s.i
	if b, ok := s.plain(); ok {
		for _, l := range s.leaders {
			if l != "" && string(b) == l {
				*v = l
				return
			}
		}
	}
	s.i = start
	s.str(v)
	copy(s.leaders[1:], s.leaders[:])
	s.leaders[0] = *v
}

// ackPolicy reads the ack policy, sharing the strings a server sends
// rather than allocating one per consumer.
func (s *scanner) ackPolicy(v *string) {
	if s.null() || s.bad {
		return
	}
	start := s.i
	b, ok := s.plain()
	if !ok {
		s.i = start
		s.str(v)
		return
	}
	switch string(b) {
	case "explicit":
		*v = "explicit"
	case "none":
		*v = "none"
	case "all":
		*v = "all"
	default:
		s.i = start
		s.str(v)
	}
}

func (s *scanner) sequence(q *sequenceInfo) {
	if s.null() || s.bad {
		return
	}
	s.object(func(key []byte) int {
		switch string(key) {
		case "consumer_seq":
			s.uint(&q.Consumer)
			return 0
		case "stream_seq":
			s.uint(&q.Stream)
			return 1
		case "last_active":
			s.time(&q.Last)
			return 2
		}
		return s.unknown(key)
	})
}

// metadata reads the consumer's metadata through metadata.UnmarshalJSON,
// as encoding/json does, so the two paths cannot disagree; it reads the
// value again, but a small one.
func (s *scanner) metadata(m *metadata) {
	s.space()
	start := s.i
	s.skip(0)
	if s.bad {
		return
	}
	if err := m.UnmarshalJSON(s.b[start:s.i]); err != nil {
		s.bad = true // encoding/json reports it
	}
}
