package sampler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams one by one, when the stream list does not answer in time.
//
// A clustered server answers STREAM.LIST only once the leader of every
// stream has answered it, or after 4 seconds. When some leaders cannot be
// reached (a gateway cut leaves the streams placed in the far cluster out
// of reach) the list times out, and every tick would be blind: the nodes
// of the streams still in reach too, for as long as the servers keep the
// far ones on their books (minutes). Instead the sampler then asks for the
// stream names, which the meta leader answers from its own records, and
// for each stream's info from that stream's leader: a stream whose leader
// does not answer is unobserved on its own, and the rest are judged as
// usual. It keeps sampling this way, trying the list again every
// listRetry, until the list answers in time again.
//
// One request per stream costs more than a paged list, so this is only the
// way through a cut, never the way in steady state.

// listRetry is how long the sampler reads streams one by one before it
// tries the stream list again: each try that times out costs a tick its
// request timeout, so not every tick, yet a healed cut is back on the
// cheap path within half a minute.
const listRetry = 30 * time.Second

type namesPage struct {
	apiPage
	Streams []string `json:"streams"`
}

type streamInfoReply struct {
	Error *jetstream.APIError `json:"error"`
	streamInfo
}

// isTimeout reports whether a stream list failed for want of an answer in
// time, as opposed to an answer that says why.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// listStreams reads every stream: the paged stream list, or one by one
// while that does not answer in time.
func (s *Sampler) listStreams(ctx context.Context, now time.Time) ([]streamInfo, []string, error) {
	if now.Before(s.byOneUntil) {
		return s.streamsByOne(ctx)
	}
	streams, missing, err := listAll(ctx, s, s.streamListSubj, &s.streams, streamName, s.infos[:0], s.missing[:0], &s.body)
	s.infos, s.missing = streams[:0], missing[:0]
	switch {
	case err == nil:
		if !s.byOneUntil.IsZero() {
			s.byOneUntil = time.Time{}
			s.log.Info("the stream list answers in time again")
		}
		return streams, missing, nil
	case !isTimeout(err) || ctx.Err() != nil:
		return nil, nil, err
	}
	if s.byOneUntil.IsZero() {
		s.log.Warn("the stream list does not answer in time (some stream leaders out of reach?); reading streams one by one, those that do not answer unobserved",
			"error", err, "retry", listRetry)
	}
	s.byOneUntil = now.Add(listRetry)
	return s.streamsByOne(ctx)
}

// streamsByOne reads the stream names, then each stream's info with
// bounded concurrency. A stream whose info does not come is returned among
// the missing (unobserved); one deleted meanwhile is left out.
func (s *Sampler) streamsByOne(ctx context.Context) ([]streamInfo, []string, error) {
	var names []string
	var page namesPage
	for offset := 0; ; {
		page = namesPage{}
		if err := s.request(ctx, s.streamNamesSubj, offset, &page, &s.body); err != nil {
			return nil, nil, err
		}
		if page.Error != nil {
			return nil, nil, fmt.Errorf("%s offset %d: %w", s.streamNamesSubj, offset, page.Error)
		}
		names = append(names, page.Streams...)
		offset += len(page.Streams)
		if len(page.Streams) == 0 || offset >= page.Total {
			break
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	// Streams that answered last time first: those that did not would
	// hold a worker for a whole timeout each.
	slices.SortStableFunc(names, func(a, b string) int {
		_, fa := s.infoFailing[a]
		_, fb := s.infoFailing[b]
		switch {
		case fa == fb:
			return 0
		case fb:
			return -1
		}
		return 1
	})

	infos := make([]streamInfo, len(names))
	state := make([]int, len(names)) // listed, gone or failed
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.cfg.Concurrency, len(names)) {
		wg.Go(func() {
			var body []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) {
					return
				}
				var r streamInfoReply
				err := s.request(ctx, s.streamInfoPre+names[i], 0, &r, &body)
				switch {
				case err == nil && r.Error == nil:
					infos[i], state[i] = r.streamInfo, listed
				case err == nil && r.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
					state[i] = gone
				default:
					state[i] = failed
				}
			}
		})
	}
	wg.Wait()
	if s.infoFailing == nil {
		s.infoFailing = map[string]struct{}{}
	}
	clear(s.infoFailing)
	var out []streamInfo
	var missing []string
	for i, name := range names {
		switch state[i] {
		case listed:
			if infos[i].Config.Name == "" {
				infos[i].Config.Name = name
			}
			out = append(out, infos[i])
		case failed:
			missing = append(missing, name)
			s.infoFailing[name] = struct{}{}
		}
	}
	slices.SortFunc(out, func(a, b streamInfo) int { return cmp.Compare(a.Config.Name, b.Config.Name) })
	slices.Sort(missing)
	return out, missing, nil
}
