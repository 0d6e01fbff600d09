// Package summary carries flow summaries between engines that share the
// work of watching one NATS system (scale-out). Every engine, a member,
// samples a share of the streams, computes per-node flow metrics with its
// own tracker, and publishes each tick a Part: the nodes of its share and
// the streams it owned, so the leader can tell a node that left from one
// on a stream nobody sampled.
// The leader reads the latest Part of every member and evaluates the rules
// over all of them.
//
// Parts travel on a memory JetStream stream (Stream), one subject per
// member, so a leader that just took over reads every member's latest Part
// at once instead of waiting a tick. A member may watch 10,000 nodes a
// tick; as JSON that is several megabytes, beyond JetStream's default 1 MB
// max payload. So a Part is encoded in a compact binary form (only the
// fields that are not zero: about 85 bytes a node in a mix of idle and
// busy ones) and split into chunks that each fit a message; the collector
// reassembles them.
package summary

import (
	"encoding/hex"
	"time"

	"github.com/happen-dev/happen/rules/snapshot"
)

// Part is one member's share of one tick.
type Part struct {
	Member     string             // the member's instance name
	Seq        uint64             // the member's tick counter; chunks with the same Seq form one Part
	At         time.Time          // the member's snapshot time
	Owned      []string           // streams the member sampled as their owner this tick, observed or not
	Nodes      []snapshot.Node    // every node observed on the owned streams, sorted by key
	Unobserved []snapshot.NodeKey // nodes on owned streams not readable this tick
}

// Stream is the JetStream stream holding the parts.
const Stream = "happen_summaries"

// SubjectPrefix starts every part's subject: happen.summary.<token>.
const SubjectPrefix = "happen.summary."

// hexPrefix marks a hex-encoded token. '~' is outside [A-Za-z0-9_-], so
// no plain name can start with it and the two forms never collide.
const hexPrefix = "~"

// Token is member made safe for one subject token: the name itself when it
// is only [A-Za-z0-9_-] (and not empty), else hexPrefix and its bytes in
// hex. The Part's header carries the real name.
func Token(member string) string {
	if member != "" && plain(member) {
		return member
	}
	return hexPrefix + hex.EncodeToString([]byte(member))
}

func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Subject is the subject member publishes its parts on.
func Subject(member string) string { return SubjectPrefix + Token(member) }
