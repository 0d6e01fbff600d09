package main

import (
	"net"
	"strings"
	"testing"
)

// The full demo runs once, in internal/demo. Here: what the command adds
// around it, none of which needs the demo to run to its end.
func TestDemoRefusesBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"demo", "--log-level", "loud"}, 2, `--log-level "loud"`},
		{[]string{"demo", "--interval", "1ms"}, 2, "--interval 1ms is too short"},
		{[]string{"demo", "extra"}, 1, `unknown command "extra"`},
	}
	for _, tc := range tests {
		stdout, stderr, code := run(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) || stdout != "" {
			t.Errorf("happen %v: exit %d, want %d with %q:\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.msg, stdout, stderr)
		}
	}
}

// A web view port in use fails the demo at once, exit 1, naming the
// address, and stops what it had started (the process ends).
func TestDemoPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stdout, stderr, code := run(t, nil, "demo", "--http", ln.Addr().String())
	if code != 1 || !strings.Contains(stderr, ln.Addr().String()) {
		t.Fatalf("exit %d, want 1 naming %s:\nstdout: %s\nstderr: %s", code, ln.Addr(), stdout, stderr)
	}
	if strings.Contains(stdout, "FAULT INJECTED") {
		t.Fatalf("a summary from a demo that could not start:\n%s", stdout)
	}
}
