package sampler

import "encoding/json"

// A JSZ report is read with the scanner of decode.go, for the reason the
// consumer listings are: at 10,000 consumers the reports of a tick are
// megabytes, and encoding/json costs about five times as much CPU per byte
// (BenchmarkDecodeJSZ). As there, the scanner decodes only what it can
// decode exactly as encoding/json would and hands anything else (an error
// reply among them) to encoding/json; FuzzDecodeJSZ checks the two agree.

// decodeJSZ decodes one JSZ reply body into into.
func decodeJSZ(b []byte, into *jszReply) error {
	*into = jszReply{}
	if scanJSZ(b, into) {
		return nil
	}
	*into = jszReply{}
	return json.Unmarshal(b, into)
}

// scanJSZ decodes b into r, which is zero, and reports whether it could.
func scanJSZ(b []byte, r *jszReply) bool {
	s := scanner{b: b}
	s.jszReply(r)
	if !s.bad {
		s.space()
		if s.i != len(s.b) {
			s.bad = true
		}
	}
	return !s.bad
}

func (s *scanner) jszReply(r *jszReply) {
	s.object(func(key []byte) int {
		switch string(key) {
		case "server":
			if !s.null() && !s.bad {
				s.object(func(key []byte) int {
					if string(key) == "name" {
						s.str(&r.Server.Name)
						return 0
					}
					return s.unknown(key)
				})
			}
			return 0
		case "data":
			if s.null() || s.bad {
				r.Data = nil
				return 1
			}
			r.Data = &jszData{}
			s.jszData(r.Data)
			return 1
		case "error":
			// Rare: encoding/json's.
			if !s.null() {
				s.bad = true
			}
			r.Error = nil
			return 2
		}
		return s.unknown(key)
	})
}

func (s *scanner) jszData(d *jszData) {
	s.object(func(key []byte) int {
		switch string(key) {
		case "disabled":
			s.boolean(&d.Disabled)
			return 0
		case "now":
			s.time(&d.Now)
			return 1
		case "meta_cluster":
			if s.null() || s.bad {
				d.Meta = nil
				return 2
			}
			d.Meta = &jszMeta{}
			s.jszMeta(d.Meta)
			return 2
		case "account_details":
			s.array(func() { d.Accounts = []jszAccount{} }, func() {
				d.Accounts = append(d.Accounts, jszAccount{})
				s.jszAccount(&d.Accounts[len(d.Accounts)-1])
			}, func() { d.Accounts = nil })
			return 3
		}
		return s.unknown(key)
	})
}

func (s *scanner) jszMeta(m *jszMeta) {
	s.object(func(key []byte) int {
		switch string(key) {
		case "leader":
			s.str(&m.Leader)
			return 0
		case "replicas":
			s.array(func() { m.Replicas = []jszPeer{} }, func() {
				m.Replicas = append(m.Replicas, jszPeer{})
				p := &m.Replicas[len(m.Replicas)-1]
				if s.null() || s.bad {
					return
				}
				s.object(func(key []byte) int {
					switch string(key) {
					case "name":
						s.str(&p.Name)
						return 0
					case "offline":
						s.boolean(&p.Offline)
						return 1
					}
					return s.unknown(key)
				})
			}, func() { m.Replicas = nil })
			return 1
		}
		return s.unknown(key)
	})
}

func (s *scanner) jszAccount(a *jszAccount) {
	if s.null() || s.bad {
		return
	}
	s.object(func(key []byte) int {
		switch string(key) {
		case "name":
			s.str(&a.Name)
			return 0
		case "id":
			s.str(&a.ID)
			return 1
		case "stream_detail":
			s.array(func() { a.Streams = []jszStream{} }, func() {
				a.Streams = append(a.Streams, jszStream{})
				s.jszStream(&a.Streams[len(a.Streams)-1])
			}, func() { a.Streams = nil })
			return 2
		}
		return s.unknown(key)
	})
}

func (s *scanner) jszStream(st *jszStream) {
	if s.null() || s.bad {
		return
	}
	s.object(func(key []byte) int {
		switch string(key) {
		case "name":
			s.str(&st.Name)
			return 0
		case "created":
			s.time(&st.Created)
			return 1
		case "cluster":
			if s.null() || s.bad {
				st.Cluster = nil
				return 2
			}
			st.Cluster = &jszLeader{}
			s.object(func(key []byte) int {
				if string(key) == "leader" {
					s.str(&st.Cluster.Leader)
					return 0
				}
				return s.unknown(key)
			})
			return 2
		case "state":
			if s.null() || s.bad {
				return 3
			}
			state := &st.State
			s.object(func(key []byte) int {
				switch string(key) {
				case "messages":
					s.uint(&state.Msgs)
					return 0
				case "bytes":
					s.uint(&state.Bytes)
					return 1
				case "first_seq":
					s.uint(&state.FirstSeq)
					return 2
				case "first_ts":
					s.time(&state.FirstTime)
					return 3
				case "last_seq":
					s.uint(&state.LastSeq)
					return 4
				case "last_ts":
					s.time(&state.LastTime)
					return 5
				case "consumer_count":
					s.intNative(&state.Consumers)
					return 6
				}
				return s.unknown(key)
			})
			return 3
		case "consumer_detail":
			s.array(func() { st.Consumers = []consumerInfo{} }, func() {
				st.Consumers = append(st.Consumers, consumerInfo{})
				s.consumer(&st.Consumers[len(st.Consumers)-1])
			}, func() { st.Consumers = nil })
			return 4
		}
		return s.unknown(key)
	})
}

// array reads a JSON array, calling item for each element, or empty for
// an empty array: encoding/json leaves an empty slice, not nil. A null
// calls null instead, as encoding/json sets a slice to nil.
func (s *scanner) array(empty, item func(), null func()) {
	if s.null() || s.bad {
		if !s.bad {
			null()
		}
		return
	}
	if s.peek() != '[' {
		s.bad = true
		return
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		empty()
		return
	}
	for !s.bad {
		item()
		if !s.more(']') {
			return
		}
	}
}
