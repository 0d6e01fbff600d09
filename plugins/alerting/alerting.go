package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/happen-dev/happen/plugins/internal/nodeset"
	"github.com/happen-dev/happen/plugins/internal/params"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

// Alerting POSTs incidents to a webhook: when a rule fires, and again when
// the incident ends.
type Alerting struct {
	version string
	client  *http.Client

	// attemptTimeout bounds one POST, so a webhook that hangs is retried
	// rather than eating the whole action timeout.
	attemptTimeout time.Duration
	// maxAttempts bounds the POSTs of one action; the request's context
	// bounds them too.
	maxAttempts int
	// backoff is the first wait between attempts; it doubles up to
	// maxBackoff, which also caps a server's Retry-After.
	backoff, maxBackoff time.Duration

	sent *sentSet
	// open holds back the resolve of a group incident until its last node
	// is up.
	open *openSet
}

// New returns the action; version is reported by Describe and sent in the
// User-Agent.
func New(version string) *Alerting {
	return &Alerting{
		version: version,
		client: &http.Client{
			// A redirected POST turns into a GET and loses its body; a
			// webhook URL that redirects is a configuration error to report.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		attemptTimeout: 10 * time.Second,
		maxAttempts:    5,
		backoff:        500 * time.Millisecond,
		maxBackoff:     10 * time.Second,
		sent:           newSentSet(4096, 24*time.Hour, time.Now),
		open:           newOpenSet(4096, 24*time.Hour, time.Now),
	}
}

var _ sdk.Action = (*Alerting)(nil)

// Describe names the plugin and its parameters.
func (a *Alerting) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:    "alerting",
		Version: a.version,
		Params: []sdk.Param{
			{Name: "url", Description: "the webhook to POST to (http or https)", Required: true, Secret: true},
			{Name: "format", Description: "json (the event envelope), slack ({\"text\": ...}) or alertmanager (Alertmanager v2 alerts); default json"},
			{Name: "headers", Description: "extra HTTP headers, a map of name to value"},
		},
	}, nil
}

type config struct {
	url     *url.URL
	format  string
	headers map[string]string
}

func parseConfig(with map[string]any) (config, error) {
	if err := params.Check(with, "url", "format", "headers"); err != nil {
		return config{}, err
	}
	raw, set, err := params.String(with, "url")
	if err != nil {
		return config{}, err
	}
	if !set {
		return config{}, errors.New("parameter url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold a token: say what is wrong without printing it.
		return config{}, errors.New("parameter url: not an absolute http(s) URL")
	}
	format, set, err := params.String(with, "format")
	if err != nil {
		return config{}, err
	}
	if !set {
		format = FormatJSON
	}
	switch format {
	case FormatJSON, FormatSlack, FormatAlertmanager:
	default:
		return config{}, fmt.Errorf("parameter format: %q is not json, slack or alertmanager", format)
	}
	headers, err := params.StringMap(with, "headers")
	if err != nil {
		return config{}, err
	}
	for k := range headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return config{}, fmt.Errorf("parameter headers: %q is not a header name", k)
		}
	}
	return config{url: u, format: format, headers: headers}, nil
}

// Execute sends the alert for a down event.
func (a *Alerting) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.send(ctx, req, false)
}

// Undo sends the resolve for an up event.
func (a *Alerting) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.send(ctx, req, true)
}

func (a *Alerting) send(ctx context.Context, req *sdk.ExecuteRequest, resolve bool) (*sdk.ExecuteResponse, error) {
	done := false // delivered now or before
	cfg, err := parseConfig(req.With)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("alerting: %w", err))
	}
	down := req.Down
	if !resolve && down.Type == "" {
		down = req.Event
	}
	inc, err := readIncident(req.Rule, req.Event, down, resolve)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("alerting: event %s: %w", req.Event.Context.ID, err))
	}
	phase := "fire"
	if resolve {
		phase = "resolve"
	}
	dest := redact(cfg.url)
	incID := firstNonEmpty(down.Context.CorrelationID, down.Context.ID)

	// A node incident ends when its last node is up: a partial node.up
	// (one node of a partition left or was superseded) sends nothing.
	openKey := destKey(cfg) + "|" + incID
	if !inc.system {
		if !resolve {
			a.open.down(openKey, inc.affected)
		} else {
			over, nodes := a.open.up(openKey, inc.upNode, inc.affected, inc.reason == events.ReasonCleared || inc.reason == events.ReasonRemoved)
			if !over {
				return &sdk.ExecuteResponse{Message: fmt.Sprintf("%s of incident %s is up; its resolve waits for %s", inc.upNode, incID, strings.Join(nodes, ", "))}, nil
			}
			inc.affected = nodes
			defer func() {
				if done {
					a.open.forget(openKey)
				}
			}()
		}
	}

	// Keys of what this request would deliver. One destination gets one
	// alert per incident and phase (per node for Alertmanager, whose alerts
	// are per node), whichever action or event of the incident comes first.
	scope := destKey(cfg) + "|" + incID + "|" + phase
	var keys []string
	if req.IdempotencyKey != "" {
		keys = append(keys, destKey(cfg)+"|idem|"+req.IdempotencyKey)
	}
	var nodeKeys map[string]string // key → node, for alertmanager
	if cfg.format == FormatAlertmanager && !inc.system {
		nodeKeys = map[string]string{}
		for _, n := range inc.affected {
			nodeKeys[scope+"|"+n] = n
			keys = append(keys, scope+"|"+n)
		}
	} else {
		keys = append(keys, scope)
	}

	claimed, err := a.sent.claim(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("alerting: wait for a concurrent send to %s: %w", dest, err)
	}
	delivered := false
	defer func() { a.sent.release(claimed, delivered) }()

	skip := len(claimed) < len(keys) // something of this request went out already
	var nodes []string
	if nodeKeys != nil {
		idemDone := req.IdempotencyKey != "" && !slices.Contains(claimed, keys[0])
		for _, k := range claimed {
			if n, ok := nodeKeys[k]; ok {
				nodes = append(nodes, n)
			}
		}
		skip = idemDone || len(nodes) == 0
	}
	if skip {
		done = true
		return &sdk.ExecuteResponse{Message: fmt.Sprintf("%s of incident %s already sent to %s", phase, incID, dest)}, nil
	}

	var body []byte
	switch cfg.format {
	case FormatJSON:
		body, err = json.Marshal(req.Event)
	case FormatSlack:
		body, err = slackBody(inc.slackText())
	case FormatAlertmanager:
		body, err = json.Marshal(inc.alertmanagerAlerts(nodeset.Union(nodes, nil)))
	}
	if err != nil {
		return nil, fmt.Errorf("alerting: encode %s body: %w", cfg.format, err)
	}
	attempts, err := a.post(ctx, cfg, body)
	if err != nil {
		err = fmt.Errorf("alerting: %s %s to %s: %w", cfg.format, phase, dest, err)
		var perm *permanentError
		if errors.As(err, &perm) {
			// The engine's retries would get the same answer.
			err = sdk.Permanent(err)
		}
		return nil, err
	}
	delivered, done = true, true
	return &sdk.ExecuteResponse{Message: fmt.Sprintf("sent %s %s to %s (%d attempt(s))", cfg.format, phase, dest, attempts)}, nil
}

// post delivers body, retrying on 429, 5xx, timeouts and connection errors
// with exponential backoff, within ctx and maxAttempts.
func (a *Alerting) post(ctx context.Context, cfg config, body []byte) (int, error) {
	wait := a.backoff
	for attempt := 1; ; attempt++ {
		retryAfter, err := a.attempt(ctx, cfg, body)
		if err == nil {
			return attempt, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return attempt, err
		}
		if ctx.Err() != nil {
			return attempt, fmt.Errorf("stopped after %d attempt(s): %w", attempt, err)
		}
		if attempt >= a.maxAttempts {
			return attempt, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		d := wait
		if retryAfter > 0 {
			d = min(retryAfter, a.maxBackoff)
		}
		wait = min(wait*2, a.maxBackoff)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return attempt, fmt.Errorf("stopped after %d attempt(s): %w (last error: %v)", attempt, ctx.Err(), err)
		}
	}
}

// permanentError is a failure that retrying will not cure.
type permanentError struct{ error }

func (e *permanentError) Unwrap() error { return e.error }

// attempt makes one POST. It returns how long the server asked to wait
// before the next try, if it did.
func (a *Alerting) attempt(ctx context.Context, cfg config, body []byte) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, a.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, cfg.url.String(), bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{fmt.Errorf("build request: %w", redactErr(err, cfg.url))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "happen-alerting/"+a.version)
	for k, v := range cfg.headers {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		// Timeouts and connection errors are worth another try.
		return 0, redactErr(err, cfg.url)
	}
	defer resp.Body.Close()
	snippet := readSnippet(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = fmt.Errorf("webhook answered %s: %s", resp.Status, snippet)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return retryAfter(resp.Header.Get("Retry-After"), time.Now()), err
	}
	return 0, &permanentError{err}
}

// readSnippet returns the start of a response body for an error message and
// drains a little more so the connection can be reused.
func readSnippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redact keeps a URL's scheme and host: webhook URLs often carry their
// token in the path or query.
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

// redactErr replaces the full URL that net/http puts in its errors.
func redactErr(err error, u *url.URL) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redact(u), ue.Err)
	}
	return errors.New(strings.ReplaceAll(err.Error(), u.String(), redact(u)))
}

// destKey identifies a destination without keeping its secret URL around.
func destKey(cfg config) string {
	h := sha256.Sum256([]byte(cfg.format + " " + cfg.url.String()))
	return hex.EncodeToString(h[:8])
}
