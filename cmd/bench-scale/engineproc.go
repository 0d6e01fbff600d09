package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildHappen builds cmd/happen into dir and returns the binary's path.
func buildHappen(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "happen")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/happen-dev/happen/cmd/happen")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/happen: %w\n%s", err, strings.TrimSpace(out.String()))
	}
	return bin, nil
}

// engineProc is a running `happen engine`.
type engineProc struct {
	cmd  *exec.Cmd
	pid  int
	http string // host:port of its /metrics and /healthz
	log  *tailWriter

	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// startEngine runs bin engine with args; its stderr goes to ours, each line
// prefixed, and the last lines are kept for error messages.
func startEngine(bin, httpAddr string, args []string, prefix string, stderr io.Writer) (*engineProc, error) {
	cmd := exec.Command(bin, append([]string{"engine"}, args...)...)
	p := &engineProc{cmd: cmd, http: httpAddr, log: newTailWriter(stderr, prefix, 20), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// Its own process group: a Ctrl-C reaches this program, which then
	// stops the engine in order; if this program dies, the engine does too.
	cmd.SysProcAttr = engineProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the engine has exited, and why.
func (p *engineProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, fmt.Errorf("happen engine exited: %v; last output:\n%s", p.err, p.log.tail())
	default:
		return false, nil
	}
}

// stop asks the engine to drain and exit (SIGINT), and kills it if it has
// not within timeout. It returns an error if the engine did not exit 0.
func (p *engineProc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exitErr()
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("happen engine did not exit within %v of SIGINT; killed", timeout)
	}
}

func (p *engineProc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("happen engine: %w; last output:\n%s", p.err, p.log.tail())
	}
	return nil
}

// healthy reports whether /healthz answers 200.
func (p *engineProc) healthy(ctx context.Context) bool {
	_, code, err := httpGet(ctx, "http://"+p.http+"/healthz")
	return err == nil && code == http.StatusOK
}

// scrape reads the engine's sample-time series from /metrics. The engine
// gathers every series to answer, whatever the filter, which at 10,000
// nodes costs it about a second of CPU: scrape only outside the window.
func (p *engineProc) scrape(ctx context.Context) (scrape, error) {
	url := "http://" + p.http + "/metrics?name[]=" + sampleMetric + "&name[]=happen_samples_total"
	body, code, err := httpGet(ctx, url)
	if err != nil {
		return scrape{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	if code != http.StatusOK {
		return scrape{}, fmt.Errorf("scrape %s: HTTP %d", url, code)
	}
	return parseScrape(body)
}

func httpGet(ctx context.Context, url string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// procStat is what /proc says about a process at one moment.
type procStat struct {
	at       time.Time
	cpu      time.Duration // utime + stime, in 10ms steps
	threads  time.Duration // the sum of its threads' run times in ns; 0: unknown
	rss, hwm int64         // bytes
}

// cpuSince is the CPU time used since prev: from the threads' run times
// where the kernel reports them (a few milliseconds of CPU matter in a
// short window), else from utime + stime. A thread that exits takes its
// run time with it, so a sum that went down falls back to the latter.
func (p procStat) cpuSince(prev procStat) time.Duration {
	if p.threads > 0 && prev.threads > 0 && p.threads >= prev.threads {
		return p.threads - prev.threads
	}
	return p.cpu - prev.cpu
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func readProc(pid int) (procStat, error) {
	st := procStat{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("engine CPU time (needs Linux /proc): %w", err)
	}
	if st.cpu, err = parseStatCPU(b); err != nil {
		return st, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("engine memory: %w", err)
	}
	if st.rss, st.hwm, err = parseStatusMem(b); err != nil {
		return st, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	st.threads = threadsRunTime(pid)
	return st, nil
}

// threadsRunTime sums the first field of /proc/<pid>/task/*/schedstat,
// each thread's time on a CPU in nanoseconds; 0 if the kernel has none.
func threadsRunTime(pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		sum += time.Duration(ns)
	}
	return sum
}

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The command name may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusMem returns VmRSS and VmHWM, in bytes, from the contents of
// /proc/<pid>/status.
func parseStatusMem(b []byte) (rss, hwm int64, err error) {
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s %q: want a number of kB", key, strings.TrimSpace(val))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s %q: %w", key, f[0], err)
		}
		if key == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("no VmRSS or VmHWM line")
	}
	return rss, hwm, nil
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// tailWriter copies lines to w with a prefix and keeps the last few.
type tailWriter struct {
	w      io.Writer
	prefix string
	keep   int

	mu      sync.Mutex
	partial []byte
	lines   []string
}

func newTailWriter(w io.Writer, prefix string, keep int) *tailWriter {
	return &tailWriter{w: w, prefix: prefix, keep: keep}
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, b...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := string(t.partial[:i])
		t.partial = t.partial[i+1:]
		if t.w != nil {
			fmt.Fprintln(t.w, t.prefix+line)
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > t.keep {
			t.lines = t.lines[1:]
		}
	}
	return len(b), nil
}

func (t *tailWriter) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if len(t.partial) > 0 {
		s += "\n" + string(t.partial)
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// readMachineCPU returns the time all CPUs have been busy, from /proc/stat:
// with this program's and the engine's own, it tells how much else the
// machine was doing during a window.
func readMachineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("machine CPU time: %w", err)
	}
	d, err := parseMachineCPU(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return d, nil
}

// parseMachineCPU sums the busy fields of /proc/stat's first line: user,
// nice, system, irq, softirq and steal (idle and iowait are not busy).
func parseMachineCPU(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("first line %q: want cpu and at least 8 times", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time %q: %w", f[i], err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
