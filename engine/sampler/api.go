package sampler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Wire types hold only what a sample needs; encoding/json skips the rest,
// and fields a newer server adds are ignored. Consumer listings are read by
// the scanner in decode.go, which decodes exactly these fields.

type apiPage struct {
	Error   *jetstream.APIError `json:"error"`
	Total   int                 `json:"total"`
	Offset  int                 `json:"offset"`
	Missing []string            `json:"missing"`
}

type streamPage struct {
	apiPage
	Items []streamInfo `json:"streams"`
}

type consumerPage struct {
	apiPage
	Items []consumerInfo `json:"consumers"`
}

type streamInfo struct {
	Config struct {
		Name     string   `json:"name"`
		Subjects []string `json:"subjects"`
		// Limits, read for data-loss risk; JSON numbers, -1 or 0 for none.
		Discard           string `json:"discard"` // "old" or "new"
		MaxMsgs           int64  `json:"max_msgs"`
		MaxBytes          int64  `json:"max_bytes"`
		MaxAge            int64  `json:"max_age"` // nanoseconds
		MaxMsgsPerSubject int64  `json:"max_msgs_per_subject"`
		AllowDirect       bool   `json:"allow_direct"`
	} `json:"config"`
	State     streamState `json:"state"`
	TimeStamp time.Time   `json:"ts"`
	Created   time.Time   `json:"created"` // tells a recreated stream (jsz.go)
}

// streamState is a stream's state, as both the stream list and the JSZ
// reports give it.
type streamState struct {
	Msgs      uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	FirstTime time.Time `json:"first_ts"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_ts"`
	Consumers int       `json:"consumer_count"`
}

type consumerInfo struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Config  struct {
		DeliverSubject string   `json:"deliver_subject"`
		AckPolicy      string   `json:"ack_policy"`
		AckWait        int64    `json:"ack_wait"` // nanoseconds
		Metadata       metadata `json:"metadata"`
		FilterSubject  string   `json:"filter_subject"`
		FilterSubjects []string `json:"filter_subjects"`
	} `json:"config"`
	Delivered      sequenceInfo `json:"delivered"`
	AckFloor       sequenceInfo `json:"ack_floor"`
	NumAckPending  int64        `json:"num_ack_pending"`
	NumRedelivered int64        `json:"num_redelivered"`
	NumWaiting     int64        `json:"num_waiting"`
	NumPending     uint64       `json:"num_pending"`
	PushBound      bool         `json:"push_bound"`
	Paused         bool         `json:"paused"`
	TimeStamp      time.Time    `json:"ts"`
	// Only a clustered server reports the consumer's leader. A value, not a
	// pointer, and the leader alone: the replica list is skipped unread.
	Cluster struct {
		Leader string `json:"leader"`
	} `json:"cluster"`
}

type sequenceInfo struct {
	Consumer uint64    `json:"consumer_seq"`
	Stream   uint64    `json:"stream_seq"`
	Last     time.Time `json:"last_active"` // absent: zero
}

func streamName(s *streamInfo) string     { return s.Config.Name }
func consumerName(c *consumerInfo) string { return c.Name }

// page is a list response that can be decoded into again.
type page[T any] interface {
	header() *apiPage
	items() []T
	reset()
}

func (p *streamPage) header() *apiPage    { return &p.apiPage }
func (p *streamPage) items() []streamInfo { return p.Items }
func (p *streamPage) reset()              { p.apiPage, p.Items = resetPage(p.apiPage, p.Items) }

func (p *consumerPage) header() *apiPage      { return &p.apiPage }
func (p *consumerPage) items() []consumerInfo { return p.Items }
func (p *consumerPage) reset()                { p.apiPage, p.Items = resetPage(p.apiPage, p.Items) }

// resetPage empties a page for reuse. encoding/json decodes into existing
// slice elements without zeroing them, which would merge metadata maps and
// keep stale optional fields, so the elements are zeroed first.
func resetPage[T any](h apiPage, items []T) (apiPage, []T) {
	clear(items[:cap(items)])
	return apiPage{Missing: h.Missing[:0]}, items[:0]
}

// maxPasses bounds how often a listing restarts because the list changed
// while it was being paged.
const maxPasses = 3

// listAll pages through a JetStream list API and returns every item, sorted
// by name, and the names the server reported missing (offline or not
// answering in a cluster), sorted; a missing name is never among the items.
// Items and missing are appended to the given slices.
//
// Paging is by offset into the server's name-sorted list, so a deletion
// between two pages would silently skip an item. If the total changes
// between pages the pass is repeated; if it keeps changing, the union of
// the passes is returned: a stale entry costs at most one tick, a skipped
// one would look like a node that left.
func listAll[T any, P page[T]](ctx context.Context, s *Sampler, subj string, pg P, name func(*T) string, items []T, missing []string, body *[]byte) ([]T, []string, error) {
	base, mbase := len(items), len(missing)
	pages := 0
	for pass := 0; pass < maxPasses; pass++ {
		passStart, mpassStart := len(items), len(missing)
		offset, total, consistent := 0, -1, true
		for {
			pg.reset()
			if err := s.request(ctx, subj, offset, pg, body); err != nil {
				return items, missing, err
			}
			h := pg.header()
			if h.Error != nil {
				return items, missing, fmt.Errorf("%s offset %d: %w", subj, offset, h.Error)
			}
			pages++
			if total >= 0 && h.Total != total {
				consistent = false
			}
			total = h.Total
			got := pg.items()
			items = append(items, got...)
			missing = append(missing, h.Missing...)
			n := len(got) + countNotIn(h.Missing, got, name)
			offset += n
			if n == 0 || offset >= h.Total {
				break
			}
		}
		if consistent {
			if pass > 0 { // only the last, consistent pass counts
				items = append(items[:base], items[passStart:]...)
				missing = append(missing[:mbase], missing[mpassStart:]...)
			}
			break
		}
	}
	out, miss := items[base:], missing[mbase:]
	if pages > 1 || !sortedByName(out, name) {
		sort.SliceStable(out, func(i, j int) bool { return name(&out[i]) < name(&out[j]) })
		out = lastOfEach(out, name)
	}
	if len(miss) > 0 {
		slices.Sort(miss)
		miss = slices.Compact(miss)
		w := 0
		for i := range out {
			if _, found := slices.BinarySearch(miss, name(&out[i])); !found {
				out[w] = out[i]
				w++
			}
		}
		clear(out[w:])
		out = out[:w]
	}
	return items[:base+len(out)], missing[:mbase+len(miss)], nil
}

func sortedByName[T any](s []T, name func(*T) string) bool {
	for i := 1; i < len(s); i++ {
		if name(&s[i]) < name(&s[i-1]) {
			return false
		}
	}
	return true
}

// countNotIn counts the names in missing that are not also among items: a
// clustered server lists an offline entry both ways, a single server once.
func countNotIn[T any](missing []string, items []T, name func(*T) string) int {
	n := 0
next:
	for _, m := range missing {
		for i := range items {
			if name(&items[i]) == m {
				continue next
			}
		}
		n++
	}
	return n
}

// lastOfEach keeps the last of each run of equal names in a stably sorted
// slice: the entry from the latest pass.
func lastOfEach[T any](s []T, name func(*T) string) []T {
	w := 0
	for i := range s {
		if i+1 < len(s) && name(&s[i]) == name(&s[i+1]) {
			continue
		}
		s[w] = s[i]
		w++
	}
	clear(s[w:])
	return s[:w]
}

// request sends one list request under the per-request timeout and decodes
// the reply into into.
func (s *Sampler) request(ctx context.Context, subj string, offset int, into any, body *[]byte) error {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	b := append((*body)[:0], `{"offset":`...)
	b = strconv.AppendInt(b, int64(offset), 10)
	b = append(b, '}')
	*body = b
	msg, err := s.nc.RequestWithContext(rctx, subj, b)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%s offset %d: no JetStream API responds (JetStream not enabled for this account, or none reachable: a leaf connection cut from its hub?): %w", subj, offset, err)
		}
		return fmt.Errorf("%s offset %d: %w", subj, offset, err)
	}
	if err := decodeReply(msg.Data, into); err != nil {
		return fmt.Errorf("%s offset %d: decode response: %w", subj, offset, err)
	}
	return nil
}
