package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/internal/testutil"
)

func TestEngineRefusesBadKVReplicas(t *testing.T) {
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--kv-replicas", "0"}},
		{[]string{"HAPPEN_KV_REPLICAS=6"}, nil},
	} {
		args := append([]string{"engine", "--http", "off", "--embedded-listen", "127.0.0.1:0", "--data", t.TempDir()}, c.args...)
		_, errOut, code := run(t, c.env, args...)
		if code != 2 || !strings.Contains(errOut, "--kv-replicas") || !strings.Contains(errOut, "want 1 to 5") {
			t.Errorf("%v %v: exit %d, stderr:\n%s", c.env, c.args, code, errOut)
		}
	}
}

// An engine watching a 3-server cluster with HAPPEN_KV_REPLICAS=3 gives the
// KV bucket a plugin creates 3 replicas.
func TestEngineKVReplicasInCluster(t *testing.T) {
	servers := testutil.RunCluster(t, 3)
	url := servers[0].ClientURL()
	nc := testutil.Connect(t, url)
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The cluster elects its JetStream leaders first.
	testutil.CheckFor(t, 60*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3})
		return err
	})
	if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "a", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	// A rule that fires for every node at once, run by the example plugin,
	// which keeps its record in KV bucket happen_incidents.
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rulesFile, []byte(`version: 1
name: kv-replicas
rules:
  - name: any-node
    scope: node
    when: node.observedSeconds >= 0
    emit: node.down
    pattern: test
    level: warning
    actions:
      - plugin: incidents
`), 0o644)
	cmd := exec.Command(happenBin, "engine", "--nats", url, "--http", "off", "--data", t.TempDir(),
		"--rules", rulesFile, "--interval", "250ms")
	cmd.Env = append(os.Environ(), "HAPPEN_KV_REPLICAS=3")
	var stderr testutil.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("engine stderr:\n%s", stderr.String())
		}
	})

	// The plugin's bucket and the engine's own state bucket.
	for _, bucket := range []string{"happen_incidents", "happen_engine"} {
		var replicas int
		testutil.CheckFor(t, 90*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := js.Stream(cctx, "KV_"+bucket)
			if err != nil {
				return fmt.Errorf("bucket %s: %w", bucket, err)
			}
			replicas = st.CachedInfo().Config.Replicas
			return nil
		})
		if replicas != 3 {
			t.Fatalf("bucket %s has %d replicas, want 3", bucket, replicas)
		}
	}
}
