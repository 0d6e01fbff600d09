// Package ttlbucket opens the KV buckets whose entries must age out: the
// leader lease and the members sharing the streams. Both rest on the
// bucket's TTL, so a bucket that exists without one is refused, and one
// that exists with another TTL sets it for every engine.
package ttlbucket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Open returns cfg.Bucket, creating it with cfg when it does not exist,
// and the TTL it has. noTTL says what a bucket without a TTL would break,
// for the error refusing it.
func Open(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, noTTL string) (jetstream.KeyValue, time.Duration, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket) // another engine made it meanwhile
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open KV bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read KV bucket %s: %w", cfg.Bucket, err)
	}
	if st.TTL() <= 0 {
		return nil, 0, fmt.Errorf("KV bucket %s has no TTL: %s; delete it, or give it a TTL", cfg.Bucket, noTTL)
	}
	return kv, st.TTL(), nil
}
