// Package hostapi is the engine's side of sdk.Host: what a plugin may do on
// NATS, carried out over the engine's own connection. Plugins hold no NATS
// credentials; every publish, KV access and consumer change they make goes
// through here, so it is validated once, in one place, with errors that
// name the subject, bucket, key, stream or consumer involved.
//
// Because the connection is the engine's, some of it is not the plugin's to
// use: Publish refuses NATS's own API subjects (everything starting with
// "$": JetStream, KV, system), reply inboxes and the engine's event subjects,
// and the KV calls refuse the engine's state bucket.
package hostapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const defaultTimeout = 5 * time.Second

// DefaultStateBucket is the engine's state bucket unless WithStateBucket
// says otherwise; it is engine.StateBucket, which this package cannot
// import.
const DefaultStateBucket = "happen_engine"

// Option adjusts a host.
type Option func(*config)

type config struct {
	apiPrefix string // JetStream API prefix, ending in "."
	domain    string
	timeout   time.Duration
	replicas  int

	eventPrefix string // subjects the engine publishes its events under
	stateBucket string // the engine's own KV bucket
}

// WithDomain talks to the JetStream of the given domain (API prefix
// $JS.<domain>.API), as a leafnode-connected engine must.
func WithDomain(domain string) Option {
	return func(c *config) {
		if domain != "" {
			c.domain, c.apiPrefix = domain, ""
		}
	}
}

// WithAPIPrefix uses a JetStream API prefix imported from another account,
// instead of $JS.API.
func WithAPIPrefix(prefix string) Option {
	return func(c *config) {
		if prefix != "" {
			if !strings.HasSuffix(prefix, ".") {
				prefix += "."
			}
			c.apiPrefix, c.domain = prefix, ""
		}
	}
}

// WithTimeout bounds calls whose context carries no deadline (default 5s).
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithBucketReplicas sets the replicas of KV buckets that KVPut creates
// (default 1); a clustered deployment wants 3.
func WithBucketReplicas(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.replicas = n
		}
	}
}

// WithEventPrefix names the subject prefix the engine publishes its events
// under (its --subject-prefix; default happen.events). Plugins may not
// publish on the prefix or below it, so they cannot forge events.
func WithEventPrefix(prefix string) Option {
	return func(c *config) {
		if prefix = strings.TrimSuffix(prefix, "."); prefix != "" {
			c.eventPrefix = prefix
		}
	}
}

// WithStateBucket names the engine's own KV bucket (engine.StateBucket;
// default happen_engine), which plugins may neither read nor change.
func WithStateBucket(bucket string) Option {
	return func(c *config) {
		if bucket != "" {
			c.stateBucket = bucket
		}
	}
}

// host implements sdk.Host over one NATS connection.
type host struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	jsErr error // why js could not be made; returned by every KV call
	cfg   config
	inbox string // nc's custom inbox prefix, if it has one
}

// New returns the sdk.Host that acts through nc. It does no I/O.
func New(nc *nats.Conn, opts ...Option) sdk.Host {
	cfg := config{
		apiPrefix: jetstream.DefaultAPIPrefix, timeout: defaultTimeout, replicas: 1,
		eventPrefix: events.DefaultPrefix, stateBucket: DefaultStateBucket,
	}
	for _, o := range opts {
		o(&cfg)
	}
	var js jetstream.JetStream
	var err error
	jsOpt := jetstream.WithDefaultTimeout(cfg.timeout)
	if cfg.domain != "" {
		js, err = jetstream.NewWithDomain(nc, cfg.domain, jsOpt)
		cfg.apiPrefix = "$JS." + cfg.domain + ".API."
	} else {
		js, err = jetstream.NewWithAPIPrefix(nc, cfg.apiPrefix, jsOpt)
	}
	if err != nil {
		err = fmt.Errorf("hostapi: jetstream context: %w", err)
	}
	return &host{nc: nc, js: js, jsErr: err, cfg: cfg, inbox: nc.Opts.InboxPrefix}
}

// bound gives ctx a deadline when it has none: the NATS client refuses to
// flush or wait for a reply without one.
func (h *host) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, h.cfg.timeout)
}

// Publish sends data on subject and waits until the server has it.
func (h *host) Publish(ctx context.Context, subject string, data []byte) error {
	if err := validatePublishSubject(subject); err != nil {
		return fmt.Errorf("hostapi: publish: %w", err)
	}
	if err := h.reservedSubject(subject); err != nil {
		return fmt.Errorf("hostapi: publish: %w", err)
	}
	if err := h.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("hostapi: publish on %q: %w", subject, err)
	}
	ctx, cancel := h.bound(ctx)
	defer cancel()
	if err := h.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("hostapi: publish on %q: flush: %w", subject, err)
	}
	return nil
}

// KVGet reads key from bucket; a missing bucket or key is found=false.
func (h *host) KVGet(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	if err := validateBucketKey(bucket, key); err != nil {
		return nil, false, fmt.Errorf("hostapi: kv get: %w", err)
	}
	if err := h.reservedBucket(bucket); err != nil {
		return nil, false, fmt.Errorf("hostapi: kv get: %w", err)
	}
	if h.jsErr != nil {
		return nil, false, h.jsErr
	}
	kv, err := h.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("hostapi: kv get %s/%s: open bucket: %w", bucket, key, err)
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("hostapi: kv get %s/%s: %w", bucket, key, err)
	}
	return e.Value(), true, nil
}

// KVPut writes key in bucket, creating the bucket when it does not exist.
func (h *host) KVPut(ctx context.Context, bucket, key string, value []byte) error {
	if err := validateBucketKey(bucket, key); err != nil {
		return fmt.Errorf("hostapi: kv put: %w", err)
	}
	if err := h.reservedBucket(bucket); err != nil {
		return fmt.Errorf("hostapi: kv put: %w", err)
	}
	if h.jsErr != nil {
		return h.jsErr
	}
	kv, err := h.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = h.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "created by happen",
			Replicas:    h.cfg.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Someone else created it between our two calls.
			kv, err = h.js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return fmt.Errorf("hostapi: kv put %s/%s: open bucket: %w", bucket, key, err)
	}
	if _, err := kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("hostapi: kv put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// KVDelete removes key from bucket. Deleting from a bucket that does not
// exist is not an error: the key is gone either way.
func (h *host) KVDelete(ctx context.Context, bucket, key string) error {
	if err := validateBucketKey(bucket, key); err != nil {
		return fmt.Errorf("hostapi: kv delete: %w", err)
	}
	if err := h.reservedBucket(bucket); err != nil {
		return fmt.Errorf("hostapi: kv delete: %w", err)
	}
	if h.jsErr != nil {
		return h.jsErr
	}
	kv, err := h.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostapi: kv delete %s/%s: open bucket: %w", bucket, key, err)
	}
	if err := kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("hostapi: kv delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// apiResponse is the part of a JetStream consumer API reply we read. The
// config is kept raw so fields this client does not know survive an update.
type apiResponse struct {
	Error  *jetstream.APIError `json:"error,omitempty"`
	Config json.RawMessage     `json:"config,omitempty"`
}

// ConsumerConfig returns the consumer's configuration exactly as the server
// reports it.
func (h *host) ConsumerConfig(ctx context.Context, stream, consumer string) (json.RawMessage, error) {
	if err := validateStreamConsumer(stream, consumer); err != nil {
		return nil, fmt.Errorf("hostapi: consumer config: %w", err)
	}
	raw, err := h.consumerConfig(ctx, stream, consumer)
	if err != nil {
		return nil, fmt.Errorf("hostapi: consumer config of %s/%s: %w", stream, consumer, err)
	}
	return raw, nil
}

func (h *host) consumerConfig(ctx context.Context, stream, consumer string) (json.RawMessage, error) {
	resp, err := h.apiRequest(ctx, fmt.Sprintf("CONSUMER.INFO.%s.%s", stream, consumer), nil)
	if err != nil {
		return nil, err
	}
	if len(resp.Config) == 0 {
		return nil, errors.New("server replied without a config")
	}
	return resp.Config, nil
}

// UpdateConsumer reads the consumer's configuration, replaces the fields
// named in patch and submits the result as a consumer update. A nil value
// removes the field, so the server applies its default.
func (h *host) UpdateConsumer(ctx context.Context, stream, consumer string, patch map[string]any) error {
	if err := validateStreamConsumer(stream, consumer); err != nil {
		return fmt.Errorf("hostapi: update consumer: %w", err)
	}
	if len(patch) == 0 {
		return fmt.Errorf("hostapi: update consumer %s/%s: empty patch", stream, consumer)
	}
	raw, err := h.consumerConfig(ctx, stream, consumer)
	if err != nil {
		return fmt.Errorf("hostapi: update consumer %s/%s: read config: %w", stream, consumer, err)
	}
	merged, err := applyPatch(raw, patch)
	if err != nil {
		return fmt.Errorf("hostapi: update consumer %s/%s: %w", stream, consumer, err)
	}
	body, err := json.Marshal(struct {
		Stream string          `json:"stream_name"`
		Config json.RawMessage `json:"config"`
		Action string          `json:"action"`
	}{stream, merged, "update"})
	if err != nil {
		return fmt.Errorf("hostapi: update consumer %s/%s: encode request: %w", stream, consumer, err)
	}
	if _, err := h.apiRequest(ctx, fmt.Sprintf("CONSUMER.CREATE.%s.%s", stream, consumer), body); err != nil {
		return fmt.Errorf("hostapi: update consumer %s/%s: %w", stream, consumer, err)
	}
	return nil
}

// applyPatch replaces the patched fields of the raw config. Field names are
// JetStream's: those this client knows plus any the server reported.
func applyPatch(raw json.RawMessage, patch map[string]any) (json.RawMessage, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("decode current config: %w", err)
	}
	var unknown []string
	for k := range patch {
		if _, ok := cfg[k]; !ok && !consumerFields[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown consumer config field(s) %q", unknown)
	}
	for k, v := range patch {
		if v == nil {
			delete(cfg, k)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode field %q: %w", k, err)
		}
		cfg[k] = b
	}
	merged, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	// Catch wrong types here, with the field's name, rather than as a
	// terse server error.
	var typed jetstream.ConsumerConfig
	if err := json.Unmarshal(merged, &typed); err != nil {
		return nil, fmt.Errorf("patched config is invalid: %w", err)
	}
	return merged, nil
}

// consumerFields are the JSON names of jetstream.ConsumerConfig. It is
// computed once and only read afterwards.
var consumerFields = jsonFieldNames(reflect.TypeFor[jetstream.ConsumerConfig]())

func jsonFieldNames(t reflect.Type) map[string]bool {
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
}

// apiRequest calls the JetStream API at prefix+subject and returns its reply,
// turning an API error into a *jetstream.APIError so callers can test it
// with errors.Is(err, jetstream.ErrConsumerNotFound) and the like.
func (h *host) apiRequest(ctx context.Context, subject string, body []byte) (*apiResponse, error) {
	ctx, cancel := h.bound(ctx)
	defer cancel()
	subj := h.cfg.apiPrefix + subject
	msg, err := h.nc.RequestWithContext(ctx, subj, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("no JetStream API on %s: %w", subj, err)
	}
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", subj, err)
	}
	var resp apiResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("decode reply of %s: %w", subj, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp, nil
}

// reservedSubject reports why subject, though well formed, belongs to NATS
// or to the engine rather than to a plugin.
func (h *host) reservedSubject(subject string) error {
	under := func(prefix string) bool {
		return subject == prefix || strings.HasPrefix(subject, prefix+".")
	}
	switch {
	case strings.HasPrefix(subject, "$"):
		return fmt.Errorf("subject %q refused: subjects starting with \"$\" are the NATS JetStream, KV and system APIs; use the host's KV and consumer calls", subject)
	case h.cfg.apiPrefix != "" && strings.HasPrefix(subject, h.cfg.apiPrefix):
		return fmt.Errorf("subject %q refused: it is the JetStream API (prefix %q); use the host's KV and consumer calls", subject, h.cfg.apiPrefix)
	case under(strings.TrimSuffix(nats.InboxPrefix, ".")):
		return fmt.Errorf("subject %q refused: %s subjects carry replies to the engine's own requests", subject, nats.InboxPrefix)
	case h.inbox != "" && under(h.inbox):
		return fmt.Errorf("subject %q refused: %s. subjects carry replies to the engine's own requests", subject, h.inbox)
	case under(h.cfg.eventPrefix):
		return fmt.Errorf("subject %q refused: it is under the engine's event prefix %q, and only the engine publishes events", subject, h.cfg.eventPrefix)
	}
	return nil
}

// reservedBucket reports why bucket is not a plugin's to use.
func (h *host) reservedBucket(bucket string) error {
	if bucket == h.cfg.stateBucket {
		return fmt.Errorf("bucket %s refused: it holds the engine's own state", bucket)
	}
	return nil
}

// validatePublishSubject reports why subject cannot be published to: empty,
// an empty token, whitespace, or a wildcard.
func validatePublishSubject(subject string) error {
	if subject == "" {
		return errors.New("empty subject")
	}
	for tok := range strings.SplitSeq(subject, ".") {
		if err := validateToken(tok); err != nil {
			return fmt.Errorf("subject %q: %w", subject, err)
		}
	}
	return nil
}

// validateToken reports why tok cannot be one token of a subject that is
// published to: empty, a wildcard, or holding whitespace.
func validateToken(tok string) error {
	if tok == "" {
		return errors.New("empty token")
	}
	if tok == "*" || tok == ">" {
		return fmt.Errorf("wildcard %q not allowed", tok)
	}
	if i := strings.IndexFunc(tok, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '\f' || r == '\v'
	}); i >= 0 {
		return fmt.Errorf("token %q holds %q", tok, tok[i])
	}
	return nil
}

func validateBucketKey(bucket, key string) error {
	if bucket == "" {
		return errors.New("empty bucket name")
	}
	for _, r := range bucket {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("bucket name %q: %q not allowed (letters, digits, _ and - only)", bucket, r)
		}
	}
	if key == "" {
		return fmt.Errorf("bucket %s: empty key", bucket)
	}
	if strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return fmt.Errorf("bucket %s: key %q has an empty token", bucket, key)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-/_=.", r)) {
			return fmt.Errorf("bucket %s: key %q: %q not allowed (letters, digits and -/_=. only)", bucket, key, r)
		}
	}
	return nil
}

func validateStreamConsumer(stream, consumer string) error {
	if err := validateName("stream", stream); err != nil {
		return err
	}
	return validateName("consumer", consumer)
}

func validateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	if i := strings.IndexAny(name, ">*. /\\\t\r\n"); i >= 0 {
		return fmt.Errorf("%s name %q: %q not allowed", kind, name, name[i])
	}
	return nil
}
