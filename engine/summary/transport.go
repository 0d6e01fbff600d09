package summary

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config shapes the stream EnsureStream creates.
type Config struct {
	// Replicas of the stream; default 1.
	Replicas int
	// MaxAge is how long a chunk stays. It only needs to outlive a few
	// ticks: a leader that takes over reads back one Stale's worth (the
	// Collector's), and older parts are superseded anyway. The caller
	// derives it from its interval.
	MaxAge time.Duration
}

// MaxBytes caps the stream: room for dozens of parts of 10,000 nodes
// (about 1 MB each), so the latest Part of every member survives a few
// ticks, while a member publishing far too much cannot fill the servers'
// memory. With discard old, the oldest chunks go first.
const MaxBytes = 64 << 20

// EnsureStream creates the stream, or updates it to cfg. An existing
// stream whose update is refused (other replicas, another engine's
// settings) is used as it is; one that exists but cannot be read is an
// error.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	sc := jetstream.StreamConfig{
		Name:        Stream,
		Description: "happen scale-out: each member's per-node flow summary, chunked",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    MaxBytes,
		Replicas:    cfg.Replicas,
	}
	_, err := js.UpdateStream(ctx, sc)
	if err == nil {
		return nil
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, sc)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", Stream, err)
		}
		// Another engine created it meanwhile: use it as it is.
	}
	if _, ierr := js.Stream(ctx, Stream); ierr != nil {
		return fmt.Errorf("stream %s: update refused (%v), and reading it failed: %w", Stream, err, ierr)
	}
	return nil
}

// Publisher publishes one member's parts.
type Publisher struct {
	js       jetstream.JetStream
	member   string
	subject  string
	maxChunk int
}

// NewPublisher returns a Publisher for member; maxChunk <= 0 means
// DefaultMaxChunk. It does no I/O.
func NewPublisher(js jetstream.JetStream, member string, maxChunk int) *Publisher {
	if maxChunk <= 0 {
		maxChunk = DefaultMaxChunk
	}
	return &Publisher{js: js, member: member, subject: Subject(member), maxChunk: maxChunk}
}

// headroom is what a chunk leaves of the connection's max payload for the
// message's headers (the expected-stream header, a few dozen bytes).
const headroom = 1 << 10

// Publish encodes p as the publisher's member (p.Member is ignored) and
// publishes its chunks at once, then waits for every ack, bounded by ctx.
func (pb *Publisher) Publish(ctx context.Context, p *Part) error {
	q := *p
	q.Member = pb.member
	limit := pb.maxChunk
	if mp := int(pb.js.Conn().MaxPayload()); mp > headroom && mp-headroom < limit {
		limit = mp - headroom
	}
	chunks, err := Encode(&q, limit)
	if err != nil {
		return fmt.Errorf("publish summary: %w", err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(chunks))
	for i, c := range chunks {
		f, err := pb.js.PublishAsync(pb.subject, c, jetstream.WithExpectStream(Stream))
		if err != nil {
			return fmt.Errorf("publish summary of member %q seq %d chunk %d/%d: %w", pb.member, q.Seq, i+1, len(chunks), err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish summary of member %q seq %d chunk %d/%d: %w", pb.member, q.Seq, i+1, len(chunks), err)
		case <-ctx.Done():
			return fmt.Errorf("publish summary of member %q seq %d: ack of chunk %d/%d: %w", pb.member, q.Seq, i+1, len(chunks), ctx.Err())
		}
	}
	return nil
}
