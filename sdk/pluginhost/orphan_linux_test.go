package pluginhost_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
)

// A plugin whose engine is killed outright (no chance to stop its
// plugins) exits by itself rather than running on, orphaned.
func TestPluginExitsWhenItsEngineIsKilled(t *testing.T) {
	// sh stands in for the engine: it starts the plugin, says its pid, and
	// is then killed with SIGKILL.
	// Its output goes to a file: a pipe closed under the plugin would end
	// it for another reason.
	outFile := filepath.Join(t.TempDir(), "out")
	parent := exec.Command("sh", "-c", `"$PLUGIN" > "$OUT" & echo $! > "$OUT.pid"; exec sleep 600`)
	parent.Env = append(os.Environ(), "PLUGIN="+plugins["hostcall"], "OUT="+outFile,
		"HAPPEN_PLUGIN_MAGIC_COOKIE=7d4f3c1e-happen-flow-balance-plugin")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	testutil.Eventually(t, 10*time.Second, func() bool {
		// Serving once its handshake line is out.
		b, _ := os.ReadFile(outFile)
		p, _ := os.ReadFile(outFile + ".pid")
		pid, _ = strconv.Atoi(strings.TrimSpace(string(p)))
		return pid > 0 && strings.Contains(string(b), "|grpc")
	}, "plugin started under sh")
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	})
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	testutil.Eventually(t, 15*time.Second, func() bool { return !alive(pid) },
		"plugin %d still running after its engine was killed", pid)
}

// alive reports whether pid runs: not gone and not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
