// Package pluginhost is the engine's end of the plugin protocol. Start runs
// one plugin executable, checks that it speaks this protocol version,
// serves it the engine's sdk.Host over go-plugin's broker and returns a
// Plugin, an sdk.Action whose calls go to that process. Plugin authors do
// not need this package; they call sdk.Serve.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/internal/pb"
	"github.com/happen-dev/happen/sdk/internal/wire"
)

// ProtocolVersion is the plugin protocol version this engine speaks.
const ProtocolVersion = wire.ProtocolVersion

// Config says which executable to run and what to lend it.
type Config struct {
	// Path of the plugin executable. It is run as is, never looked up in
	// PATH.
	Path string
	// Host is served to the plugin; every call it makes on req.Host ends
	// here.
	Host sdk.Host
	// Logger records the plugin's output (standard error and standard
	// output, one record a line, at the level a JSON line names) and,
	// at debug level, go-plugin's own messages. Nil discards them.
	Logger *slog.Logger
	// Redact, when set, is applied to every line of the plugin's output
	// before it is logged, so secrets a plugin prints stay out of the log.
	Redact func(string) string
	// Checksum, when set, is the SHA-256 of the executable; a file that no
	// longer matches is not started.
	Checksum []byte
	// Env is the plugin's whole environment (KEY=value). The engine's own
	// environment is not passed on, so credentials it holds stay with it.
	Env []string
	// StartTimeout bounds the handshake; default 10s. A deadline on the
	// context given to Start bounds it too.
	StartTimeout time.Duration
}

// Plugin is one running plugin process.
type Plugin struct {
	path   string
	client *plugin.Client
	rpc    *rpcAction
}

var _ sdk.Action = (*Plugin)(nil)

// ErrUnavailable is wrapped by the errors of calls that failed because the
// plugin process could not be reached: it exited or its connection broke.
var ErrUnavailable = errors.New("plugin process unavailable")

// ActionError is a failure the plugin reported itself.
type ActionError struct {
	Message string
	// Permanent is set when the plugin marked the error with sdk.Permanent.
	Permanent bool
}

func (e *ActionError) Error() string { return e.Message }

// VersionError says a plugin speaks another protocol version.
type VersionError struct {
	Path   string
	Plugin int // the version the plugin announced
	Engine int // the version this engine speaks
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("plugin %s speaks plugin protocol version %d, but this engine speaks version %d: rebuild the plugin against a happen sdk of protocol version %d",
		e.Path, e.Plugin, e.Engine, e.Engine)
}

// Start runs the executable, completes the handshake, connects the host
// service and returns the running plugin. On error the process is gone.
func Start(ctx context.Context, cfg Config) (*Plugin, error) {
	if cfg.Path == "" {
		return nil, errors.New("pluginhost: no plugin path")
	}
	if cfg.Host == nil {
		return nil, fmt.Errorf("pluginhost: start %s: no host to serve", cfg.Path)
	}
	// An absolute path is never looked up in PATH.
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: start %s: %w", cfg.Path, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	out := newOutput(log, cfg.Redact)
	var secure *plugin.SecureConfig
	if len(cfg.Checksum) > 0 {
		secure = &plugin.SecureConfig{Checksum: cfg.Checksum, Hash: sha256.New()}
	}
	cmd := exec.Command(path)
	cmd.Env = append([]string(nil), cfg.Env...)
	hostPlugin := &grpcPlugin{host: cfg.Host}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			MagicCookieKey:   wire.MagicCookieKey,
			MagicCookieValue: wire.MagicCookieValue,
		},
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {wire.PluginName: hostPlugin},
		},
		Cmd:              cmd,
		SkipHostEnv:      true,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     timeout,
		Logger:           newHCLogger(log, cfg.Path),
		Stderr:           out.writer(),
		SyncStderr:       out.writer(),
		SyncStdout:       out.writer(),
	})
	p, err := start(ctx, client)
	if err != nil {
		return nil, startError(cfg.Path, err)
	}
	p.path = cfg.Path
	if err := p.rpc.connect(ctx); err != nil {
		p.Kill()
		return nil, fmt.Errorf("start plugin %s: connect its host service: %w", cfg.Path, err)
	}
	return p, nil
}

// start runs the handshake; on error the process is killed and every
// goroutine of the attempt has ended.
func start(ctx context.Context, client *plugin.Client) (*Plugin, error) {
	type result struct {
		p   *Plugin
		err error
	}
	done := make(chan result, 1)
	go func() {
		cp, err := client.Client()
		if err != nil {
			done <- result{err: err}
			return
		}
		raw, err := cp.Dispense(wire.PluginName)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{p: &Plugin{client: client, rpc: raw.(*rpcAction)}}
	}()
	var r result
	select {
	case r = <-done:
		if r.err == nil {
			return r.p, nil
		}
	case <-ctx.Done():
		// Killing the process ends the handshake.
		client.Kill()
		r = <-done
		r.err = ctx.Err()
	}
	if r.p != nil {
		r.p.Kill()
	} else {
		client.Kill()
	}
	return nil, r.err
}

// versionRE reads go-plugin's refusal of a plugin protocol version (not of
// its own core protocol, whose message differs).
var versionRE = regexp.MustCompile(`incompatible API version with plugin\. Plugin version: (\d+)`)

func startError(path string, err error) error {
	if m := versionRE.FindStringSubmatch(err.Error()); m != nil {
		v, _ := strconv.Atoi(m[1])
		return &VersionError{Path: path, Plugin: v, Engine: ProtocolVersion}
	}
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fmt.Errorf("start plugin %s: the file changed since it was discovered (checksum mismatch); restart the engine to accept a new build", path)
	}
	return fmt.Errorf("start plugin %s: %w", path, err)
}

// Describe asks the plugin to describe itself.
func (p *Plugin) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	r, err := p.rpc.client.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return nil, callError(err)
	}
	out := &sdk.DescribeResponse{Name: r.GetName(), Version: r.GetVersion()}
	for _, q := range r.GetParams() {
		out.Params = append(out.Params, sdk.Param{
			Name: q.GetName(), Description: q.GetDescription(), Required: q.GetRequired(), Secret: q.GetSecret(),
		})
	}
	return out, nil
}

// Execute runs the action in the plugin. req.Host is ignored: the plugin
// always gets the host given to Start. A failure the plugin reports is an
// *ActionError.
func (p *Plugin) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return p.call(ctx, p.rpc.client.Execute, req)
}

// Undo reverses the action in the plugin, as Execute does.
func (p *Plugin) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return p.call(ctx, p.rpc.client.Undo, req)
}

type rpcFunc func(context.Context, *pb.ExecuteRequest, ...grpc.CallOption) (*pb.ExecuteResponse, error)

func (p *Plugin) call(ctx context.Context, f rpcFunc, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	in, err := toProto(req)
	if err != nil {
		return nil, &ActionError{Message: err.Error(), Permanent: true}
	}
	r, err := f(ctx, in)
	if err != nil {
		return nil, callError(err)
	}
	if r.GetError() != "" {
		return nil, &ActionError{Message: r.GetError(), Permanent: r.GetPermanent()}
	}
	return &sdk.ExecuteResponse{Message: r.GetMessage()}, nil
}

// Done is closed once the plugin process has exited.
func (p *Plugin) Done() <-chan struct{} { return p.rpc.done }

// Pid is the plugin process's id.
func (p *Plugin) Pid() int {
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Path is the executable the process runs.
func (p *Plugin) Path() string { return p.path }

// Kill stops the process, gracefully if it answers within two seconds,
// and releases everything the connection held. It is safe to call on an
// exited process and more than once.
func (p *Plugin) Kill() {
	p.client.Kill()
	p.rpc.serving.Wait()
}

// grpcPlugin is the engine's side of go-plugin's GRPCPlugin.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	host sdk.Host
}

func (g *grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pluginhost: the engine serves no actions")
}

// GRPCClient is called once per process. doneCtx ends when the process
// exits.
func (g *grpcPlugin) GRPCClient(doneCtx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	id := broker.NextId()
	a := &rpcAction{client: pb.NewActionClient(conn), hostID: id, done: doneCtx.Done()}
	// One host server per process, for its whole life; it stops when the
	// broker closes with the client, and Kill waits for it.
	a.serving.Go(func() {
		broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(opts...)
			pb.RegisterHostServer(s, &hostServer{h: g.host})
			return s
		})
	})
	return a, nil
}

type rpcAction struct {
	client  pb.ActionClient
	hostID  uint32
	done    <-chan struct{}
	serving sync.WaitGroup
}

func (a *rpcAction) connect(ctx context.Context) error {
	_, err := a.client.Connect(ctx, &pb.ConnectRequest{HostBrokerId: a.hostID})
	if err != nil {
		return callError(err)
	}
	return nil
}
