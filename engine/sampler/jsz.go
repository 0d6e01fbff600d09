package sampler

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sampling with system access (Config.System).
//
// Each tick sends one $SYS.REQ.SERVER.PING.JSZ request on the system
// connection, filtered to the watched account, with streams and consumers
// but without their configs, and asks for replies compressed (snappy: an
// eighth of the bytes; decompressing costs a fraction of decoding). Every
// server answers with its own report, so a tick costs one reply per
// server, decoded by the scanner in jszscan.go. Replies are collected
// until every server the reports name as a live JetStream peer has
// answered, or the request timeout passes.
//
// A server reports every stream and consumer it holds a replica of,
// leader or not, and followers' counts lag (pending counts stay stale
// after config updates and leader changes, nats-server #4539 and #8140).
// So a stream's state is read only from the report of the server its
// cluster info names as leader, and a consumer's likewise; a single server
// (no meta cluster in its report) leads everything it holds. A stream or
// consumer whose leader did not report this tick is unobserved, never gone:
// it is gone only when every expected server answered and none holds it.
//
// The reports carry no config, so stream and consumer configs (subjects,
// limits, metadata, filters, deliver subject, ack policy and wait) come
// from a cache filled with the same STREAM.LIST and CONSUMER.LIST.<stream>
// requests the listing path makes, on the normal connection: a stream's
// consumers are listed once, and again when a report shows a consumer the
// cache lacks or with another creation time, when an advisory says the
// stream or one of its consumers was created or updated, after the normal
// connection reconnects (advisories may have been missed), and every
// configRefresh as a safety net.
//
// If the JSZ request fails (no responders, a server's error, a reply that
// does not decode, the account unknown) the tick falls back to the listing
// path, nothing lost, the failure is logged once, and system access is
// tried again after a backoff. A tick whose reports are merely late lists
// consumers too, but the next tries system access again (jszLateTicks).

const (
	jszSubject      = "$SYS.REQ.SERVER.PING.JSZ"
	userInfoSubject = "$SYS.REQ.USER.INFO"

	// configRefresh is the safety refresh of the config cache. Advisories
	// announce every change, so it only bounds how long one lost advisory
	// (a slow-consumer drop) leaves a config stale, and each stream's turn
	// is spread over the period so the cost, one listing tick's worth per
	// period, comes a stream at a time.
	configRefresh = 5 * time.Minute

	// jszRetryMin and jszRetryMax bound the backoff before system access
	// is tried again after a failure: a failed try can cost a request
	// timeout on the tick, so it is not retried every tick.
	jszRetryMin = 10 * time.Second
	jszRetryMax = 5 * time.Minute

	// jszLateTicks is how many ticks in a row may find no report in time
	// before system access counts as failing. A server under load can be
	// late once (its report of 10,000 consumers takes tens of
	// milliseconds idle, seconds on a saturated machine): such a tick
	// lists consumers, and the next tries system access again.
	jszLateTicks = 3
)

// errNoReply is a JSZ request no server answered in time.
var errNoReply = errors.New("no reply")

// jszSource is the system access path's state. Only Sample uses it, under
// Sampler.mu, but for the dirty marks set by advisory handlers.
type jszSource struct {
	sys     *nats.Conn
	account string // the watched account; discovered when empty

	sub   *nats.Subscription // replies to the PING, on inbox+"<seq>"
	inbox string
	seq   uint64
	zr    *s2.Reader
	buf   bytes.Buffer
	req   []byte

	failing bool
	retryAt time.Time
	backoff time.Duration
	worked  bool // a tick has sampled through system access
	late    int  // ticks in a row without a report in time

	streams    map[string]*cachedStream // config cache, by stream name
	streamsAt  time.Time                // last stream list
	reconnects uint64                   // the normal connection's, at the last tick

	mu          sync.Mutex
	dirtyStream map[string]struct{} // stream configs to read again
	dirtyCons   map[string]struct{} // streams whose consumers to list again
	nc          *nats.Conn          // the normal connection, once started
	audit       *nats.Subscription  // the API audit advisories, while in use

	// The tick's scratch.
	views    map[string]*jszStream
	names    []string
	workers  []*worker
	results  []streamResult
	infos    []streamInfo
	missing  []string
	refresh  []refreshJob
	answered map[string]bool
	accSeen  bool                // a report had the account
	unread   map[string]struct{} // streams whose consumer configs could not be read
}

// cachedStream is a stream's config and its consumers' configs.
type cachedStream struct {
	info      streamInfo              // Config and Created
	consumers map[string]consumerInfo // nil until listed; Name, Created and Config
	due       time.Time               // the safety refresh of the consumers
}

func newJSZSource(sys *nats.Conn, account string) *jszSource {
	return &jszSource{
		sys: sys, account: account,
		dirtyStream: map[string]struct{}{}, dirtyCons: map[string]struct{}{},
		views: map[string]*jszStream{}, answered: map[string]bool{}, unread: map[string]struct{}{},
	}
}

// Wire types of a JSZ reply (nats-server ServerAPIResponse around JSInfo):
// only what a sample needs.
type jszReply struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Data  *jszData `json:"data"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

type jszData struct {
	Disabled bool         `json:"disabled"`
	Now      time.Time    `json:"now"`
	Meta     *jszMeta     `json:"meta_cluster"` // none on a single server
	Accounts []jszAccount `json:"account_details"`
}

type jszMeta struct {
	Leader   string    `json:"leader"`
	Replicas []jszPeer `json:"replicas"`
}

type jszPeer struct {
	Name    string `json:"name"`
	Offline bool   `json:"offline"`
}

type jszAccount struct {
	Name    string      `json:"name"` // the name tag, if any
	ID      string      `json:"id"`   // the account's name
	Streams []jszStream `json:"stream_detail"`
}

type jszLeader struct {
	Leader string `json:"leader"`
}

type jszStream struct {
	Name      string         `json:"name"`
	Created   time.Time      `json:"created"`
	Cluster   *jszLeader     `json:"cluster"`
	State     streamState    `json:"state"`
	Consumers []consumerInfo `json:"consumer_detail"`

	// Merged over the tick's reports (not in the wire format).
	at     time.Time // the leader's report time
	led    bool      // the stream's leader reported it
	others []string  // consumers only followers reported
}

// sampleJSZ samples through system access. ok false means the tick must
// use the listing path: no system access, a failure (logged), or waiting
// to try again.
func (s *Sampler) sampleJSZ(ctx context.Context, start time.Time) (streams []streamInfo, missing []string, results []streamResult, ok bool) {
	j := s.jsz
	if j == nil || (j.failing && start.Before(j.retryAt)) {
		return nil, nil, nil, false
	}
	if j.failing {
		// Configs may have changed unannounced meanwhile: read them all.
		if err := j.startAudit(); err != nil {
			s.log.Warn("cannot subscribe to API audit advisories", "error", err)
			return nil, nil, nil, false
		}
		j.streams = nil
	}
	streams, missing, results, err := s.jszTick(ctx, start)
	if err != nil && j.worked && !j.failing && errors.Is(err, errNoReply) && ctx.Err() == nil {
		if j.late++; j.late < jszLateTicks {
			s.log.Warn("system access: no JSZ report in time; this tick lists consumers", "error", err)
			return nil, nil, nil, false
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			j.backoff = min(max(2*j.backoff, jszRetryMin), jszRetryMax)
			j.retryAt = time.Now().Add(j.backoff)
			if !j.failing {
				s.log.Error("cannot sample through system access; listing consumers instead until it works again",
					"error", err, "retry_in", j.backoff)
				// The audit advisories would also carry the listing's own
				// replies: none until system access works again.
				j.stopAudit()
			} else {
				s.log.Debug("system access still failing", "error", err, "retry_in", j.backoff)
			}
			j.failing = true
		}
		return nil, nil, nil, false
	}
	if j.failing {
		s.log.Info("sampling through system access again")
	}
	j.failing, j.backoff, j.worked, j.late = false, 0, true, 0
	return streams, missing, results, true
}

// jszTick is one tick through system access.
func (s *Sampler) jszTick(ctx context.Context, start time.Time) ([]streamInfo, []string, []streamResult, error) {
	j := s.jsz
	if j.account == "" {
		acc, err := s.accountName(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		j.account = acc
	}
	dirtyStream, dirtyCons := j.takeDirty()
	if rc := s.nc.Stats().Reconnects; rc != j.reconnects {
		// Advisories sent while disconnected are lost: read every config.
		j.reconnects = rc
		j.streams = nil
	}
	complete, err := j.collect(ctx, s.cfg.Timeout)
	if err != nil {
		j.markDirty(dirtyStream, dirtyCons)
		return nil, nil, nil, err
	}
	if err := s.refreshConfigs(ctx, start, dirtyStream, dirtyCons); err != nil {
		j.markDirty(dirtyStream, dirtyCons)
		return nil, nil, nil, err
	}
	if !j.accSeen && len(j.streams) > 0 {
		// The account has streams but no report names it: a wrong
		// account name would otherwise make every stream look gone.
		return nil, nil, nil, fmt.Errorf("%s: no server reports account %q, which has %d streams", jszSubject, j.account, len(j.streams))
	}
	streams, missing, results := s.jszResults(start, complete)
	return streams, missing, results, nil
}

// accountName asks the server which account the normal connection is in.
func (s *Sampler) accountName(ctx context.Context) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	msg, err := s.nc.RequestWithContext(rctx, userInfoSubject, nil)
	if err != nil {
		return "", fmt.Errorf("find the account to watch: %s: %w", userInfoSubject, err)
	}
	var r struct {
		Data struct {
			Account string `json:"account"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return "", fmt.Errorf("find the account to watch: %s: decode reply: %w", userInfoSubject, err)
	}
	if r.Error != nil {
		return "", fmt.Errorf("find the account to watch: %s: %s", userInfoSubject, r.Error.Description)
	}
	if r.Data.Account == "" {
		return "", fmt.Errorf("find the account to watch: %s named no account", userInfoSubject)
	}
	return r.Data.Account, nil
}

// collect sends the JSZ request and merges the replies into j.views. It
// reports whether every expected server answered.
func (j *jszSource) collect(ctx context.Context, timeout time.Duration) (bool, error) {
	if !j.sys.IsConnected() {
		return false, fmt.Errorf("%s: system connection not connected (%s)", jszSubject, j.sys.Status())
	}
	if j.sub == nil {
		j.inbox = j.sys.NewInbox() + "."
		sub, err := j.sys.SubscribeSync(j.inbox + "*")
		if err != nil {
			return false, fmt.Errorf("%s: subscribe to replies: %w", jszSubject, err)
		}
		// A reply at scale is megabytes; the defaults would drop a few.
		_ = sub.SetPendingLimits(-1, -1)
		j.sub = sub
	}
	j.seq++
	reply := fmt.Sprintf("%s%d", j.inbox, j.seq)
	req, err := json.Marshal(struct {
		Account  string `json:"account"`
		Streams  bool   `json:"streams"`
		Consumer bool   `json:"consumer"`
	}{j.account, true, true})
	if err != nil {
		return false, fmt.Errorf("%s: encode request: %w", jszSubject, err)
	}
	msg := &nats.Msg{Subject: jszSubject, Reply: reply, Data: req, Header: nats.Header{}}
	// Compressed, a reply is a fraction of the bytes; decompressing costs
	// far less than decoding.
	msg.Header.Set("Accept-Encoding", "snappy")
	if err := j.sys.PublishMsg(msg); err != nil {
		return false, fmt.Errorf("%s: %w", jszSubject, err)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	clear(j.views)
	clear(j.answered)
	j.accSeen = false
	expect := map[string]bool{}
	enabled := false
	for {
		m, err := j.sub.NextMsgWithContext(rctx)
		if err != nil {
			if ctx.Err() != nil {
				return false, fmt.Errorf("%s: %w", jszSubject, ctx.Err())
			}
			if !enabled {
				if len(j.answered) == 0 {
					return false, fmt.Errorf("%s: %w within %v (is the system connection in the system account?)", jszSubject, errNoReply, timeout)
				}
				return false, fmt.Errorf("%s: no server with JetStream answered within %v", jszSubject, timeout)
			}
			break // some expected server is late: its leaders are unobserved
		}
		if m.Subject != reply {
			continue // a late reply to an earlier tick
		}
		if m.Header.Get("Status") == "503" {
			return false, fmt.Errorf("%s: %w (no server answers system requests)", jszSubject, nats.ErrNoResponders)
		}
		var r jszReply
		if err := j.decode(m, &r); err != nil {
			return false, fmt.Errorf("%s: decode reply (%d bytes): %w", jszSubject, len(m.Data), err)
		}
		name := r.Server.Name
		switch {
		case r.Error != nil:
			return false, fmt.Errorf("%s: server %s: %s (code %d)", jszSubject, name, r.Error.Description, r.Error.Code)
		case r.Data == nil || name == "":
			return false, fmt.Errorf("%s: a reply without server name or data", jszSubject)
		}
		j.answered[name] = true
		if r.Data.Disabled {
			continue
		}
		enabled = true
		expect[name] = true
		if mc := r.Data.Meta; mc != nil {
			if mc.Leader != "" {
				expect[mc.Leader] = true
			}
			for _, p := range mc.Replicas {
				if !p.Offline && p.Name != "" {
					expect[p.Name] = true
				}
			}
		}
		j.merge(&r)
		done := true
		for n := range expect {
			if !j.answered[n] {
				done = false
				break
			}
		}
		if done {
			return true, nil
		}
	}
	return false, nil
}

// decode decompresses m if need be and decodes it.
func (j *jszSource) decode(m *nats.Msg, into *jszReply) error {
	b := m.Data
	switch enc := m.Header.Get("Content-Encoding"); enc {
	case "":
	case "snappy":
		if j.zr == nil {
			j.zr = s2.NewReader(nil)
		}
		j.zr.Reset(bytes.NewReader(b))
		j.buf.Reset()
		if _, err := io.Copy(&j.buf, j.zr); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		b = j.buf.Bytes()
	default:
		return fmt.Errorf("unknown Content-Encoding %q", enc)
	}
	return decodeJSZ(b, into)
}

// merge keeps from one server's report what it leads.
func (j *jszSource) merge(r *jszReply) {
	server := r.Server.Name
	standalone := r.Data.Meta == nil
	for ai := range r.Data.Accounts {
		a := &r.Data.Accounts[ai]
		if a.ID != j.account && a.Name != j.account {
			continue
		}
		j.accSeen = true
		for si := range a.Streams {
			sd := &a.Streams[si]
			v := j.views[sd.Name]
			if v == nil {
				v = &jszStream{Name: sd.Name}
				j.views[sd.Name] = v
			}
			if sd.Cluster == nil || sd.Cluster.Leader == server {
				v.led, v.at, v.Created, v.State = true, r.Data.Now, sd.Created, sd.State
			}
			for ci := range sd.Consumers {
				c := &sd.Consumers[ci]
				// Standalone, a consumer names no leader: the server is it.
				if (standalone && c.Cluster.Leader == "") || c.Cluster.Leader == server {
					v.Consumers = append(v.Consumers, *c)
				} else {
					v.others = append(v.others, c.Name)
				}
			}
		}
	}
}

// takeDirty returns and clears the streams advisories marked.
func (j *jszSource) takeDirty() (stream, cons map[string]struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.dirtyStream) == 0 && len(j.dirtyCons) == 0 {
		return nil, nil // the usual tick: nothing to hand over, nothing to allocate
	}
	stream, cons = j.dirtyStream, j.dirtyCons
	j.dirtyStream, j.dirtyCons = map[string]struct{}{}, map[string]struct{}{}
	return stream, cons
}

// markDirty marks streams again after a tick that could not use them.
func (j *jszSource) markDirty(stream, cons map[string]struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for n := range stream {
		j.dirtyStream[n] = struct{}{}
	}
	for n := range cons {
		j.dirtyCons[n] = struct{}{}
	}
}

type refreshJob struct {
	name string
	cs   *cachedStream
	err  error
	gone bool
}

// refreshConfigs brings the config cache up to date with the tick's
// reports.
func (s *Sampler) refreshConfigs(ctx context.Context, now time.Time, dirtyStream, dirtyCons map[string]struct{}) error {
	j := s.jsz
	need := j.streams == nil || len(dirtyStream) > 0 || now.Sub(j.streamsAt) >= configRefresh
	if !need {
		for name, v := range j.views {
			cs := j.streams[name]
			if v.led && (cs == nil || !cs.info.Created.Equal(v.Created)) {
				need = true
				break
			}
		}
	}
	if need {
		if err := s.listStreamConfigs(ctx, now); err != nil {
			return err
		}
	}
	jobs := j.refresh[:0]
	for name, v := range j.views {
		cs := j.streams[name]
		if !v.led || cs == nil {
			continue
		}
		_, dirty := dirtyCons[name]
		if cs.consumers == nil || dirty || now.After(cs.due) || unknownConsumer(cs, v.Consumers) {
			jobs = append(jobs, refreshJob{name: name, cs: cs})
		}
	}
	j.refresh = jobs
	s.runRefresh(ctx, jobs)
	for i := range jobs {
		job := &jobs[i]
		_, was := j.unread[job.name]
		switch {
		case job.gone:
			delete(j.streams, job.name)
			delete(j.unread, job.name)
		case job.err != nil:
			// Listed again next tick; meanwhile its consumers not yet
			// known are unobserved.
			j.markDirty(nil, map[string]struct{}{job.name: {}})
			if !was {
				j.unread[job.name] = struct{}{}
				s.log.Warn("cannot read the stream's consumer configs; its new consumers are unobserved", "stream", job.name, "error", job.err)
			}
		case was:
			delete(j.unread, job.name)
			s.log.Info("consumer configs read again", "stream", job.name)
		}
	}
	return nil
}

func unknownConsumer(cs *cachedStream, led []consumerInfo) bool {
	for i := range led {
		c, ok := cs.consumers[led[i].Name]
		if !ok || !c.Created.Equal(led[i].Created) {
			return true
		}
	}
	return false
}

// listStreamConfigs reads every stream's config into the cache, keeping
// the consumers of streams not recreated.
func (s *Sampler) listStreamConfigs(ctx context.Context, now time.Time) error {
	j := s.jsz
	streams, missing, err := listAll(ctx, s, s.streamListSubj, &s.streams, streamName, s.infos[:0], s.missing[:0], &s.body)
	s.infos, s.missing = streams[:0], missing[:0]
	if err != nil {
		return fmt.Errorf("read stream configs: %w", err)
	}
	old := j.streams
	j.streams = make(map[string]*cachedStream, len(streams))
	for i := range streams {
		si := streams[i]
		si.State, si.TimeStamp = streamInfo{}.State, time.Time{}
		cs := old[si.Config.Name]
		if cs == nil || !cs.info.Created.Equal(si.Created) {
			// Spread the first safety refresh over the period, so the
			// streams do not all come due on one tick.
			cs = &cachedStream{due: now.Add(configRefresh * time.Duration(i+1) / time.Duration(len(streams)))}
		}
		cs.info = si
		j.streams[si.Config.Name] = cs
	}
	for _, name := range missing {
		if cs := old[name]; cs != nil {
			j.streams[name] = cs // offline: keep what is known
		}
	}
	j.streamsAt = now
	return nil
}

// runRefresh lists the consumers of each job's stream, with bounded
// concurrency.
func (s *Sampler) runRefresh(ctx context.Context, jobs []refreshJob) {
	if len(jobs) == 0 {
		return
	}
	j := s.jsz
	nw := min(s.cfg.Concurrency, len(jobs))
	for len(j.workers) < nw {
		j.workers = append(j.workers, &worker{})
	}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for _, w := range j.workers[:nw] {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) {
					return
				}
				s.refreshStream(ctx, w, &jobs[i])
			}
		})
	}
	wg.Wait()
}

func (s *Sampler) refreshStream(ctx context.Context, w *worker, job *refreshJob) {
	infos, _, err := listAll(ctx, s, s.consumerListPre+job.name, &w.page, consumerName, w.infos[:0], w.missing[:0], &w.body)
	w.infos = infos[:0]
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
			job.gone = true
			return
		}
		job.err = err
		return
	}
	m := make(map[string]consumerInfo, len(infos))
	for i := range infos {
		ci := &infos[i]
		m[ci.Name] = consumerInfo{Name: ci.Name, Created: ci.Created, Config: ci.Config}
	}
	job.cs.consumers = m
	if now := time.Now(); !job.cs.due.After(now) {
		// Listed for the safety refresh: the next in a period. Listed
		// sooner (first read, or a change), its turn keeps its place in
		// the spread.
		job.cs.due = now.Add(configRefresh)
	}
}

// jszResults turns the merged reports and the config cache into the
// tick's streams and results, both sorted by stream name, and the streams
// unobserved. complete says every expected server answered.
func (s *Sampler) jszResults(start time.Time, complete bool) ([]streamInfo, []string, []streamResult) {
	j := s.jsz
	names := j.names[:0]
	missing := j.missing[:0]
	for name, v := range j.views {
		cs := j.streams[name]
		if v.led && cs != nil && cs.consumers != nil {
			names = append(names, name)
		} else {
			// Its leader did not answer, or it is too new for its config
			// to be read: unobserved this tick.
			missing = append(missing, name)
		}
	}
	for name := range j.streams {
		if _, reported := j.views[name]; reported {
			continue
		}
		if !complete {
			missing = append(missing, name) // perhaps on a server that did not answer
		} else {
			delete(j.streams, name) // gone
			delete(j.unread, name)
		}
	}
	slices.Sort(names)
	slices.Sort(missing)
	j.names, j.missing = names, missing

	infos := j.infos[:0]
	if cap(j.results) < len(names) {
		j.results = append(j.results[:cap(j.results)], make([]streamResult, len(names)-cap(j.results))...)
	}
	results := j.results[:len(names)]
	for i, name := range names {
		v, cs := j.views[name], j.streams[name]
		si := cs.info
		si.State = v.State
		si.TimeStamp = v.at
		infos = append(infos, si)
		r := &results[i]
		*r = streamResult{
			name:       name,
			subjects:   si.Config.Subjects,
			state:      listed,
			listedAt:   start,
			consumers:  r.consumers[:0],
			unobserved: r.unobserved[:0],
			odd:        r.odd[:0],
			waiting:    r.waiting[:0],
		}
		s.jszStreamResult(r, v, cs, complete)
	}
	j.infos = infos
	return infos, missing, results
}

// jszStreamResult fills r with the consumers of one stream its leader
// reported.
func (s *Sampler) jszStreamResult(r *streamResult, v *jszStream, cs *cachedStream, complete bool) {
	// A consumer two servers both claimed to lead (a leader change between
	// their reports): the later report stands.
	slices.SortStableFunc(v.Consumers, func(a, b consumerInfo) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), a.TimeStamp.Compare(b.TimeStamp))
	})
	led := v.Consumers
	w := 0
	for i := range led {
		if i+1 < len(led) && led[i].Name == led[i+1].Name {
			continue
		}
		led[w] = led[i]
		w++
	}
	led = led[:w]
	internal := isInternal(r.name)
	for i := range led {
		ci := &led[i]
		c, ok := cs.consumers[ci.Name]
		if !ok || !c.Created.Equal(ci.Created) {
			// Listed just now and still not there: created or recreated
			// since. Its config is read next tick.
			r.unobserved = append(r.unobserved, flow.NodeKey{Stream: r.name, Consumer: ci.Name})
			continue
		}
		ci.Config = c.Config
		r.add(ci, internal)
	}
	isLed := func(name string) bool {
		_, found := slices.BinarySearchFunc(led, name, func(c consumerInfo, n string) int { return strings.Compare(c.Name, n) })
		return found
	}
	slices.Sort(v.others)
	others := slices.Compact(v.others)
	for _, name := range others {
		if !isLed(name) {
			r.unobserved = append(r.unobserved, flow.NodeKey{Stream: r.name, Consumer: name})
		}
	}
	for name := range cs.consumers {
		if isLed(name) {
			continue
		}
		if _, seen := slices.BinarySearch(others, name); seen {
			continue
		}
		if complete {
			delete(cs.consumers, name) // no server holds it: gone
		} else {
			r.unobserved = append(r.unobserved, flow.NodeKey{Stream: r.name, Consumer: name})
		}
	}
	slices.SortFunc(r.unobserved, func(a, b flow.NodeKey) int { return strings.Compare(a.Consumer, b.Consumer) })
	r.finish(s.adv)
}

// Advisories that say a config changed. nats-server sends no advisory of
// its own when a consumer is updated, only the API audit of the request,
// so the audit is read for its subject alone.
const (
	advStreamCreated   = "$JS.EVENT.ADVISORY.STREAM.CREATED."
	advStreamUpdated   = "$JS.EVENT.ADVISORY.STREAM.UPDATED."
	advConsumerCreated = "$JS.EVENT.ADVISORY.CONSUMER.CREATED."
	advAPIAudit        = "$JS.EVENT.ADVISORY.API"
)

// subscribe subscribes nc to the advisories that mark configs dirty.
func (j *jszSource) subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	add := func(subj string, h nats.MsgHandler) error {
		sub, err := nc.Subscribe(subj, h)
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return fmt.Errorf("subscribe to %s: %w", subj, err)
		}
		subs = append(subs, sub)
		return nil
	}
	stream := func(m *nats.Msg) {
		name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		j.mark(name, true)
	}
	if err := add(advStreamCreated+"*", stream); err != nil {
		return nil, err
	}
	if err := add(advStreamUpdated+"*", stream); err != nil {
		return nil, err
	}
	if err := add(advConsumerCreated+"*.*", func(m *nats.Msg) {
		if st, _, ok := strings.Cut(strings.TrimPrefix(m.Subject, advConsumerCreated), "."); ok {
			j.mark(st, false)
		}
	}); err != nil {
		return nil, err
	}
	j.mu.Lock()
	j.nc = nc
	j.mu.Unlock()
	if err := j.startAudit(); err != nil {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		return nil, err
	}
	return subs, nil
}

// startAudit subscribes to the API audit advisories, unless subscribed.
func (j *jszSource) startAudit() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.audit != nil || j.nc == nil {
		return nil
	}
	sub, err := j.nc.Subscribe(advAPIAudit, func(m *nats.Msg) {
		if st, ok := auditedConsumerCreate(m.Data); ok {
			j.mark(st, false)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", advAPIAudit, err)
	}
	j.audit = sub
	return nil
}

// stopAudit ends the API audit subscription, if any.
func (j *jszSource) stopAudit() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.audit != nil {
		_ = j.audit.Unsubscribe() // fails only on a closed connection, where it is moot
		j.audit = nil
	}
}

func (j *jszSource) mark(stream string, config bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if config {
		j.dirtyStream[stream] = struct{}{}
	}
	j.dirtyCons[stream] = struct{}{}
}

// auditedConsumerCreate reads the subject of an API audit advisory and
// returns the stream of a consumer create or update request. Only the
// subject is read: the payload also holds the request's whole response.
// Inside a JSON string a quote is escaped, so the first `"subject":"` is
// a key, and the audit puts its own before the request and response.
func auditedConsumerCreate(data []byte) (string, bool) {
	const key = `"subject":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := data[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	subj := string(rest[:end])
	for _, pre := range []string{"$JS.API.CONSUMER.CREATE.", "$JS.API.CONSUMER.DURABLE.CREATE."} {
		if tail, ok := strings.CutPrefix(subj, pre); ok {
			st, _, _ := strings.Cut(tail, ".")
			return st, st != ""
		}
	}
	return "", false
}
