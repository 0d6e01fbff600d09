package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
)

type roleStatus struct {
	Healthy bool    `json:"healthy"`
	Role    string  `json:"role"`
	Leader  string  `json:"leader"`
	Age     float64 `json:"leaseAgeSeconds"`
}

func (p *engineProc) role(t *testing.T) roleStatus {
	t.Helper()
	var st roleStatus
	if code, body := p.get("/api/status"); code == 200 {
		_ = json.Unmarshal([]byte(body), &st)
	}
	return st
}

// Two `happen engine --ha` processes against one server: one leads, the
// other stands by (healthy, naming it). SIGKILL the leader and the other
// takes over within two lease periods.
func TestEngineHAProcesses(t *testing.T) {
	srv := testutil.RunServer(t)
	a := startEngineAt(t, srv.ClientURL(), nil, "--ha", "--lease", "1s", "--instance", "a")
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := a.role(t)
		return st.Healthy && st.Role == "leader" && st.Leader == "a"
	}, "a leads")
	b := startEngineAt(t, srv.ClientURL(), nil, "--ha", "--lease", "1s", "--instance", "b")
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := b.role(t)
		code, _ := b.get("/healthz")
		return code == 200 && st.Healthy && st.Role == "standby" && st.Leader == "a" && st.Age < 2
	}, "b stands by, healthy, naming a")
	_, metrics := b.get("/metrics")
	for _, want := range []string{"happen_leader 0", "happen_lease_elections_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("b's /metrics lacks %q", want)
		}
	}

	killed := time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := b.role(t)
		return st.Role == "leader" && st.Leader == "b"
	}, "b takes over")
	if d := time.Since(killed); d > 3*time.Second {
		t.Fatalf("takeover took %v after SIGKILL, want within about two 1s lease periods", d)
	}
	_, metrics = b.get("/metrics")
	if !strings.Contains(metrics, "happen_leader 1") || !strings.Contains(metrics, "happen_lease_elections_total 1") {
		t.Errorf("b's /metrics after the takeover lack happen_leader 1 or happen_lease_elections_total 1")
	}
}
