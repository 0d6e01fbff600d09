package sampler

import (
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

// isInternal reports whether stream backs a KV bucket or an object store.
func isInternal(stream string) bool {
	return strings.HasPrefix(stream, "KV_") || strings.HasPrefix(stream, "OBJ_")
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
