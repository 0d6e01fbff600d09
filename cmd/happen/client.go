package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
)

// connFlags are the NATS connection flags of the commands that talk to a
// running engine (status, events), named as the nats CLI names them.
type connFlags struct {
	server   string
	context  string
	creds    string
	nkey     string
	user     string
	password string
	token    string
	tlsCert  string
	tlsKey   string
	tlsCA    string
	prefix   string
	timeout  time.Duration
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&c.server, "server", "s", "", "NATS server URL(s), comma separated (default: the context's URL, else $NATS_URL, else "+nats.DefaultURL+")")
	fs.StringVar(&c.context, "context", "", "nats CLI context to connect with (default: $NATS_CONTEXT, else the selected context)")
	fs.StringVar(&c.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&c.nkey, "nkey", "", "NATS nkey seed file")
	fs.StringVar(&c.user, "user", "", "NATS user")
	fs.StringVar(&c.password, "password", "", "NATS password")
	fs.StringVar(&c.token, "token", "", "NATS token")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client TLS certificate")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client TLS key")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificate to verify the server")
	fs.StringVar(&c.prefix, "subject-prefix", events.DefaultPrefix, "the engine's --subject-prefix")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "how long to wait for NATS and for the engine to answer")
}

// natsContext is the part of a nats CLI context file that says how to
// connect. It is read here rather than with github.com/nats-io/jsm.go's
// natscontext package because that module would upgrade several of our
// pinned dependencies (golang.org/x/net, prometheus/common and procfs, the
// antithesis SDK that nats-server pins to its no-op build) for a few
// dozen lines of JSON reading.
type natsContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Token    string `json:"token"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
}

// natsConfigDir is where the nats CLI keeps its contexts: $XDG_CONFIG_HOME/nats,
// else ~/.config/nats.
func natsConfigDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		u, uerr := user.Current()
		if uerr != nil || u.HomeDir == "" {
			return "", fmt.Errorf("find the nats CLI's config folder: no XDG_CONFIG_HOME and no home directory")
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".config", "nats"), nil
}

// loadContext reads the context named name (a name, or the path of a
// context file). With name empty it reads $NATS_CONTEXT, else the selected
// context; it returns nil, nil when none is selected or the nats CLI has
// no context folder.
func loadContext(name string) (*natsContext, string, error) {
	if name == "" {
		name = os.Getenv("NATS_CONTEXT")
	}
	var file string
	if strings.HasSuffix(name, ".json") && strings.ContainsAny(name, `/\`) {
		file = name
	} else {
		dir, err := natsConfigDir()
		if err != nil {
			if name == "" {
				return nil, "", nil
			}
			return nil, "", err
		}
		if name == "" {
			if _, err := os.Stat(filepath.Join(dir, "context")); err != nil {
				return nil, "", nil // the nats CLI was never set up here
			}
			sel, err := os.ReadFile(filepath.Join(dir, "context.txt"))
			if err != nil || strings.TrimSpace(string(sel)) == "" {
				return nil, "", nil // none selected
			}
			name = strings.TrimSpace(string(sel))
		}
		if strings.Contains(name, "..") || strings.ContainsAny(name, `/\`) {
			return nil, "", fmt.Errorf("nats context %q: a name must not contain \"..\", \"/\" or \"\\\"", name)
		}
		file = filepath.Join(dir, "context", name+".json")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("nats context %q: %w", name, err)
	}
	var c natsContext
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, "", fmt.Errorf("nats context %q: %s: %w", name, file, err)
	}
	// As the nats CLI does: paths may use ~ and environment variables.
	for _, p := range []*string{&c.Creds, &c.NKey, &c.Cert, &c.Key, &c.CA} {
		*p = expandPath(*p)
	}
	return &c, name, nil
}

func expandPath(p string) string {
	p = os.ExpandEnv(p)
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = home + p[1:]
		}
	}
	return p
}

// options resolves the server URL and connection options: a flag given on
// the command line wins over the context, and the context over defaults.
func (c *connFlags) options() (string, []nats.Option, error) {
	ctx, _, err := loadContext(c.context)
	if err != nil {
		return "", nil, err
	}
	if ctx == nil {
		ctx = &natsContext{}
	}
	pick := func(flag, fromCtx string) string {
		if flag != "" {
			return flag
		}
		return fromCtx
	}
	server := pick(c.server, ctx.URL)
	if server == "" {
		server = os.Getenv("NATS_URL")
	}
	if server == "" {
		server = nats.DefaultURL
	}
	var opts []nats.Option
	user, password := pick(c.user, ctx.User), pick(c.password, ctx.Password)
	creds, nkey := pick(c.creds, ctx.Creds), pick(c.nkey, ctx.NKey)
	switch { // one identity, in the nats CLI's order
	case user != "":
		opts = append(opts, nats.UserInfo(user, password))
	case creds != "":
		opts = append(opts, nats.UserCredentials(creds))
	case nkey != "":
		o, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return "", nil, fmt.Errorf("nkey %s: %w", nkey, err)
		}
		opts = append(opts, o)
	}
	if token := pick(c.token, ctx.Token); token != "" {
		opts = append(opts, nats.Token(token))
	}
	cert, key := pick(c.tlsCert, ctx.Cert), pick(c.tlsKey, ctx.Key)
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return "", nil, fmt.Errorf("TLS client certificate: both --tls-cert and --tls-key are needed (have cert %q, key %q)", cert, key)
		}
		opts = append(opts, nats.ClientCert(cert, key))
	}
	if ca := pick(c.tlsCA, ctx.CA); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	return server, opts, nil
}

// connect opens a connection named name. A follower (happen events) keeps
// reconnecting for as long as it runs, saying so on stderr.
func (c *connFlags) connect(name string, follow bool, stderr io.Writer) (*nats.Conn, error) {
	if c.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %v: want a positive duration", c.timeout)
	}
	if err := validPrefix(c.prefix); err != nil {
		return nil, err
	}
	server, opts, err := c.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(name), nats.Timeout(c.timeout))
	if follow {
		opts = append(opts,
			nats.MaxReconnects(-1),
			nats.ReconnectWait(time.Second),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					fmt.Fprintf(stderr, "disconnected from NATS (%v); reconnecting\n", err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				fmt.Fprintf(stderr, "reconnected to NATS at %s\n", nc.ConnectedUrlRedacted())
			}),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				fmt.Fprintf(stderr, "NATS: %v\n", err)
			}),
		)
	}
	nc, err := nats.Connect(server, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", redactURLs(server), err)
	}
	return nc, nil
}

func validPrefix(p string) error {
	if p == "" || strings.ContainsAny(p, " \t\r\n*>") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("--subject-prefix %q: want a subject without wildcards, such as %s", p, events.DefaultPrefix)
	}
	return nil
}

// redactURLs hides the passwords of a comma-separated URL list.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// errNoEngine says no engine answered, and what to check.
type errNoEngine struct {
	subject, server, prefix string
}

func (e errNoEngine) Error() string {
	return fmt.Sprintf("no happen engine answered on %s at %s: is one running with --subject-prefix %s?", e.subject, e.server, e.prefix)
}

// request sends body to the engine's API endpoint api (engine.APIStatus,
// ...) and decodes its reply into out.
func (c *connFlags) request(ctx context.Context, nc *nats.Conn, api string, body, out any) error {
	subj := c.prefix + "." + api
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode request for %s: %w", subj, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg, err := nc.RequestMsgWithContext(rctx, &nats.Msg{Subject: subj, Data: data})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return errNoEngine{subject: subj, server: nc.ConnectedUrlRedacted(), prefix: c.prefix}
		}
		return fmt.Errorf("request %s: %w", subj, err)
	}
	if e := msg.Header.Get("Nats-Service-Error"); e != "" {
		return fmt.Errorf("the engine refused the request on %s: %s", subj, e)
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("reply on %s is not what the engine sends: %w", subj, err)
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
