package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/embedded"
	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/engine/lease"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/engine/plugins"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rulesets"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
)

type engineFlags struct {
	nats           string
	embeddedListen string
	data           string
	creds          string
	user, password string
	token          string
	// The system account (connectSystem): sampling with one JSZ request
	// per server a tick.
	systemCreds    string
	systemUser     string
	systemPassword string
	tlsCert        string
	tlsKey         string
	tlsCA          string
	rules          string
	plugins        string
	interval       time.Duration
	http           string
	subjectPrefix  string
	kvReplicas     int
	dryRun         bool
	logLevel       string
	logFormat      string
	rec            recordFlags // --record and its rotation (replay.go)
	// Several engines (engine/ha.go): --ha elects a leader through a KV
	// lease; --instance names this engine in it and in events.
	ha       bool
	lease    time.Duration
	instance string
	// --share: the engines share the streams (engine/share.go).
	share bool
}

func newEngineCmd() *cobra.Command {
	f := &engineFlags{}
	cmd := &cobra.Command{
		Use:   "engine",
		Short: "Run the engine until SIGINT or SIGTERM",
		Long: `Run the engine: sample every stream and consumer the account can see,
evaluate the rules, publish events on <subject-prefix>.<type> and run actions.

With no --nats, an embedded JetStream server is started and its client URL
printed on stderr. Every flag can also be set as HAPPEN_<NAME>, e.g.
HAPPEN_NATS=nats://host:4222 or HAPPEN_DRY_RUN=true.`,
		Example: `  # On an embedded server (storage in ./.happen), web view on http://127.0.0.1:9466/
  happen engine

  # Watch an existing deployment with your own rules, acting on nothing yet
  happen engine --nats nats://nats.internal:4222 --creds happen.creds \
    --rules ./rules/ --dry-run

  # The same through the environment, sampling every 2s
  HAPPEN_NATS=nats://nats.internal:4222 HAPPEN_INTERVAL=2s happen engine

  # At scale: sample through the system account, one request per server a tick
  happen engine --nats nats://nats.internal:4222 --creds happen.creds \
    --system-creds sys.creds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runEngine(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.nats, "nats", "", "NATS server URL(s), comma separated; empty starts an embedded server")
	fs.StringVar(&f.embeddedListen, "embedded-listen", "127.0.0.1:4222", "where the embedded server listens (port 0 picks a free port)")
	fs.StringVar(&f.data, "data", "./.happen", "embedded server storage and engine state")
	fs.StringVar(&f.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&f.user, "user", "", "NATS user")
	fs.StringVar(&f.password, "password", "", "NATS password")
	fs.StringVar(&f.token, "token", "", "NATS token")
	fs.StringVar(&f.systemCreds, "system-creds", "", "credentials file of a system account user: sample every server's JSZ report, one request per server a tick")
	fs.StringVar(&f.systemUser, "system-user", "", "system account user, instead of --system-creds")
	fs.StringVar(&f.systemPassword, "system-password", "", "password of --system-user")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "client TLS certificate")
	fs.StringVar(&f.tlsKey, "tls-key", "", "client TLS key")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate to verify the server")
	fs.StringVar(&f.rules, "rules", "", "ruleset file or folder, watched and hot-reloaded (default: the built-in ruleset)")
	fs.StringVar(&f.plugins, "plugins", defaultPluginDir(), "folder of happen-plugin-* executables")
	fs.DurationVar(&f.interval, "interval", time.Second, "how often flow is sampled")
	fs.StringVar(&f.http, "http", "127.0.0.1:9466", "address for /metrics, /healthz and /api/status; off disables")
	fs.StringVar(&f.subjectPrefix, "subject-prefix", events.DefaultPrefix, "where events are published")
	fs.IntVar(&f.kvReplicas, "kv-replicas", 1, "replicas of the KV buckets the engine and plugins create (1-5; 3 suits a cluster of 3 or more)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "evaluate and emit events, but run no action (log what would run)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&f.ha, "ha", false, "one of several engines: elect a leader through the KV bucket happen_lease; only the leader emits and acts")
	fs.DurationVar(&f.lease, "lease", lease.DefaultPeriod, "with --ha: the lease period of a happen_lease bucket this engine creates (one that exists keeps its own)")
	fs.StringVar(&f.instance, "instance", "", "this engine's name in events (sender happen-engine/NAME) and in the lease (default: the host name)")
	fs.BoolVar(&f.share, "share", false, "with --ha: share the streams among the engines (KV bucket happen_members); each samples its share, the leader judges them all")
	f.rec.register(fs)
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// loadRules loads --rules, or the built-in ruleset when it is empty.
func loadRules(path string, opts rules.LoadOptions) (*rules.Set, error) {
	if path == "" {
		rs, err := rules.Parse(rulesets.DefaultName, rulesets.Default, opts)
		if err != nil {
			return nil, err
		}
		return rules.NewSet(rs)
	}
	return rules.LoadPaths([]string{path}, opts)
}

func runEngine(ctx context.Context, f *engineFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if f.interval < 10*time.Millisecond {
		return &exitError{code: 2, err: fmt.Errorf("--interval %v is too short (minimum 10ms)", f.interval)}
	}
	if f.kvReplicas < 1 || f.kvReplicas > 5 {
		return &exitError{code: 2, err: fmt.Errorf("--kv-replicas %d: want 1 to 5", f.kvReplicas)}
	}
	url := f.nats
	if url == "" {
		srv, err := embedded.Start(ctx, embedded.Config{Listen: f.embeddedListen, DataDir: f.data, Logger: log})
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		url = srv.ClientURL()
		fmt.Fprintf(os.Stderr, "embedded NATS listening on %s\n", url)
	}

	nc, err := connect(url, f, log)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	// Deferred first so it runs last: plugins finish acting through this
	// connection, then every event already emitted is flushed.
	defer func() {
		if err := drain(nc, 5*time.Second); err != nil {
			log.Warn("drain NATS connection", "error", err)
		}
	}()

	sys, err := connectSystem(url, f, log)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if sys != nil {
		defer sys.Close()
	}

	reg := prometheus.NewRegistry()
	// Every series, the runtime's too, is prefixed happen_.
	prometheus.WrapRegistererWithPrefix("happen_", reg).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Plugins start before the rules load, so rules are checked against
	// the plugins really installed.
	var eng *engine.Engine
	mgr, err := plugins.New(plugins.Config{
		Dir: f.plugins, Host: newHost(nc, f), Logger: log, DryRun: f.dryRun, Registry: reg,
		Emit: func(_ context.Context, failed events.ActionFailed, cause events.Envelope) {
			eng.PublishEvent(events.TypeActionFailed, failed, cause.Context.CorrelationID, cause.Context.ID)
		},
	})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if err := mgr.Start(ctx); err != nil {
		return &exitError{code: 1, err: err}
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mgr.Close(cctx); err != nil {
			log.Warn("stop plugins", "error", err)
		}
	}()

	ropts := rules.LoadOptions{Plugins: mgr, Warn: func(d rules.Diagnostic) { log.Warn(d.Msg, "at", d.Pos.String()) }}
	// The watch begins before the first load, so an edit made meanwhile is
	// not missed.
	var watcher *rules.Watcher
	if f.rules != "" {
		if watcher, err = rules.NewWatcher([]string{f.rules}, ropts, 250*time.Millisecond, rules.WatchLogger(log)); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	set, err := loadRules(f.rules, ropts)
	if err != nil {
		return &exitError{code: 1, err: err}
	}

	recorder, stopRecording, err := f.rec.open(f.interval, log)
	if err != nil {
		return err
	}
	defer stopRecording() // runs once the engine has stopped: Run returns before runEngine does
	instance := f.instance
	if instance == "" {
		instance, _ = os.Hostname()
	}
	var ls *lease.Lease
	if f.ha {
		if f.lease < time.Second {
			return &exitError{code: 2, err: fmt.Errorf("--lease %v: want at least 1s, so renewals every third of it keep up", f.lease)}
		}
		ljs, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("--ha: JetStream for the lease: %w", err)
		}
		ls = lease.New(ljs, lease.Config{Identity: instance, Period: f.lease, Replicas: f.kvReplicas, Logger: log})
	}
	var mem *members.Members
	if f.share {
		if !f.ha {
			return &exitError{code: 2, err: errors.New("--share needs --ha: the engines sharing the streams elect the one that judges them")}
		}
		mjs, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("--share: JetStream for the members: %w", err)
		}
		mem = members.New(mjs, members.Config{Identity: instance, Period: f.lease, Replicas: f.kvReplicas, Logger: log})
	}
	eng = engine.New(nc, set, engine.Config{
		Instance:      instance,
		Lease:         ls,
		Members:       mem,
		Recorder:      recorder,
		Interval:      f.interval,
		SubjectPrefix: f.subjectPrefix,
		Logger:        log,
		Dispatcher:    mgr,
		Registry:      reg,
		StateReplicas: f.kvReplicas,
		System:        sys,
	})
	log.Info("engine starting", "nats", nc.ConnectedUrlRedacted(), "rules", len(set.Rules), "files", set.Files,
		"plugins", len(mgr.Plugins()), "interval", f.interval, "dryRun", f.dryRun)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup // the goroutines below; all end with runCtx
	defer wg.Wait()
	defer cancel()
	var httpDone <-chan error
	if !strings.EqualFold(f.http, "off") {
		_, done, err := httpapi.Serve(runCtx, f.http, httpapi.Handler(eng, reg), log)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		httpDone = done
	}
	if watcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watcher.Run(runCtx, func(s *rules.Set, err error) {
				if err != nil {
					eng.Reject(err)
					return
				}
				eng.Reload(s)
			})
		}()
	}

	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(runCtx) }()
	select {
	case err = <-engDone:
	case err = <-httpDone:
		if err != nil {
			err = fmt.Errorf("http server: %w", err)
		}
		cancel()
		<-engDone
		httpDone = nil
	}
	cancel()
	if httpDone != nil {
		<-httpDone // the server has shut down
	}
	log.Info("engine stopping")
	if err != nil && !errors.Is(err, context.Canceled) {
		return &exitError{code: 1, err: err}
	}
	return nil
}

// newHost is the host API plugins act through: on the engine's connection,
// kept off the engine's own event subjects and state bucket.
func newHost(nc *nats.Conn, f *engineFlags) sdk.Host {
	return hostapi.New(nc,
		hostapi.WithEventPrefix(f.subjectPrefix),
		hostapi.WithStateBucket(engine.StateBucket),
		hostapi.WithBucketReplicas(f.kvReplicas))
}

func connect(url string, f *engineFlags, log *slog.Logger) (*nats.Conn, error) {
	opts := append(commonOptions("happen-engine", f, log),
		// A server that is down at start is a blind engine, not a failed one.
		nats.RetryOnFailedConnect(true))
	if f.creds != "" {
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	if f.user != "" || f.password != "" {
		opts = append(opts, nats.UserInfo(f.user, f.password))
	}
	if f.token != "" {
		opts = append(opts, nats.Token(f.token))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	return nc, nil
}

// commonOptions are the options of both the engine's connections: name,
// reconnects, logging and TLS.
func commonOptions(name string, f *engineFlags, log *slog.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own drain at shutdown
				log.Warn("disconnected from NATS", "connection", name, "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("reconnected to NATS", "connection", name, "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Warn("NATS async error", "connection", name, "subject", subj, "error", err)
		}),
	}
	if f.tlsCert != "" || f.tlsKey != "" {
		opts = append(opts, nats.ClientCert(f.tlsCert, f.tlsKey))
	}
	if f.tlsCA != "" {
		opts = append(opts, nats.RootCAs(f.tlsCA))
	}
	return opts
}

// drain flushes published events and closes nc, waiting at most d.
func drain(nc *nats.Conn, d time.Duration) error {
	defer nc.Close() // also when draining is impossible, e.g. never connected
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-time.After(d):
		return fmt.Errorf("drain did not finish within %v", d)
	}
}

// defaultPluginDir is bin/ beside the binary: the folder the happen
// executable itself is in, where `make build` puts the plugins too.
func defaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Dir(exe)
}

// systemConnName names the engine's connection in the system account.
const systemConnName = "happen-engine-system"

// connectSystem opens the connection in the system account that
// --system-creds or --system-user asks for, or returns nil when neither is
// given. Credentials the servers refuse fail the start, naming the flag; a
// server that cannot be reached only delays system access: the connection
// keeps trying and the engine lists consumers meanwhile.
func connectSystem(url string, f *engineFlags, log *slog.Logger) (*nats.Conn, error) {
	var flag string
	var auth nats.Option
	switch {
	case f.systemCreds != "" && (f.systemUser != "" || f.systemPassword != ""):
		return nil, errors.New("--system-creds and --system-user/--system-password: give one or the other")
	case f.systemCreds != "":
		flag, auth = "--system-creds "+f.systemCreds, nats.UserCredentials(f.systemCreds)
	case f.systemUser != "":
		flag, auth = "--system-user "+f.systemUser, nats.UserInfo(f.systemUser, f.systemPassword)
	case f.systemPassword != "":
		return nil, errors.New("--system-password without --system-user")
	default:
		return nil, nil
	}
	opts := append(commonOptions(systemConnName, f, log), auth)
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		return nc, nil
	}
	if refused(err) {
		return nil, fmt.Errorf("%s: cannot connect to the system account at %s: %w", flag, url, err)
	}
	// Not reachable now: keep trying in the background, as the engine's
	// own connection does.
	log.Warn("cannot connect to the system account yet; listing consumers until it connects", "flag", flag, "error", err)
	nc, err = nats.Connect(url, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w", flag, url, err)
	}
	return nc, nil
}

// refused reports whether err means the credentials are wrong or
// unreadable, which retrying would not mend.
func refused(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization") || strings.Contains(msg, "authentication") ||
		strings.Contains(msg, "no such file") || strings.Contains(msg, "nkey") || strings.Contains(msg, "jwt")
}
