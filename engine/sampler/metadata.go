package sampler

import (
	"encoding/json"
	"fmt"
	"github.com/happen-dev/happen/engine/summary"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/happen-dev/happen/engine/flow"
)

// maxIDLen bounds node ids and group names from metadata.
const maxIDLen = 128

// invalidID says why v cannot be a node id or group name, or "" if it can.
// Both end up in NATS subjects and JSON payloads.
func invalidID(v string) string {
	switch {
	case strings.TrimSpace(v) == "":
		return "empty"
	case len(v) > maxIDLen:
		return "longer than 128 bytes"
	case !utf8.ValidString(v):
		return "not valid UTF-8"
	}
	for _, r := range v {
		switch {
		case unicode.IsSpace(r):
			return "contains whitespace"
		case unicode.IsControl(r):
			return "contains a control character"
		case r == '.' || r == '*' || r == '>':
			return "contains '" + string(r) + "'"
		}
	}
	return ""
}

// isInternal reports whether stream backs a KV bucket or an object store,
// or carries the summaries of engines sharing the streams (whose only
// consumer is the leading engine's own reader).
func isInternal(stream string) bool {
	return strings.HasPrefix(stream, "KV_") || strings.HasPrefix(stream, "OBJ_") || stream == summary.Stream
}

// warnKey is one metadata key of one consumer.
type warnKey struct {
	node flow.NodeKey
	key  string
}

// oddValue is a refused metadata value met during a tick.
type oddValue struct {
	key      warnKey
	value    string
	reason   string
	fallback string
}

// warnOdd warns about each refused value not warned about before for the
// same consumer and key.
func (s *Sampler) warnOdd(odd []oddValue) {
	for _, o := range odd {
		if prev, ok := s.warned[o.key]; ok && prev == o.value {
			continue
		}
		s.warned[o.key] = o.value
		s.log.Warn("ignoring invalid consumer metadata",
			"stream", o.key.node.Stream, "consumer", o.key.node.Consumer,
			"key", o.key.key, "value", o.value, "reason", o.reason, "using", o.fallback)
	}
}

// pruneWarned forgets warnings for consumers whose listing this tick showed
// them gone or their value fixed, so a value that turns odd again is
// reported again.
func (s *Sampler) pruneWarned(v *view, odd []oddValue) {
	if len(s.warned) == 0 {
		return
	}
	for k := range s.warned {
		if _, _, ok := v.conclusive(k.node); !ok {
			continue
		}
		if !containsKey(odd, k) {
			delete(s.warned, k)
		}
	}
}

func containsKey(odd []oddValue, k warnKey) bool {
	for i := range odd {
		if odd[i].key == k {
			return true
		}
	}
	return false
}

// metadata is what the sampler reads from a consumer's metadata. Decoding
// only these keys, instead of the whole map, saves most of a listing's
// allocations.
type metadata struct {
	node, group       string
	hasNode, hasGroup bool
	ignore            bool
}

func (m *metadata) set(k, v string) {
	switch k {
	case MetadataNode:
		m.node, m.hasNode = v, true
	case MetadataGroup:
		m.group, m.hasGroup = v, true
	case MetadataIgnore:
		m.ignore = v == "true"
	}
}

// UnmarshalJSON reads a JSON object of strings (or null). Strings without
// escapes are read in place; anything else goes through encoding/json.
func (m *metadata) UnmarshalJSON(b []byte) error {
	*m = metadata{}
	if fastMetadata(b, m) {
		return nil
	}
	*m = metadata{}
	var all map[string]string
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("consumer metadata: %w", err)
	}
	for k, v := range all {
		m.set(k, v)
	}
	return nil
}

// fastMetadata decodes b, already validated as JSON by the caller's
// decoder, if it is null or an object whose keys and values are strings
// without escapes. It reports false otherwise.
func fastMetadata(b []byte, m *metadata) bool {
	i := skipSpace(b, 0)
	if rest := b[i:]; len(rest) >= 4 && string(rest[:4]) == "null" {
		return skipSpace(b, i+4) == len(b)
	}
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		val, j, ok := plainString(b, skipSpace(b, i+1))
		if !ok {
			return false
		}
		if k := string(key); k == MetadataNode || k == MetadataGroup || k == MetadataIgnore {
			m.set(k, string(val))
		}
		i = skipSpace(b, j)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// plainString reads a JSON string at b[i] that has no escapes, returning
// its contents and the index after the closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return b[i+1 : j], j + 1, true
		case '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
