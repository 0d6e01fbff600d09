package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// localPorts returns the local TCP ports of the sockets process pid holds
// open, from /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}. Engines sharing
// the streams all name their connection happen-engine; the server's connz
// tells them apart only by the client's port, which is one of these.
func localPorts(pid int) (map[int]bool, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("engine %d sockets (needs Linux /proc): %w", pid, err)
	}
	inodes := map[uint64]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[ino] = true
			}
		}
	}
	ports := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		path := fmt.Sprintf("/proc/%d/net/%s", pid, f)
		b, err := os.ReadFile(path)
		if err != nil {
			if f == "tcp6" && os.IsNotExist(err) {
				continue // a kernel without IPv6
			}
			return nil, fmt.Errorf("engine %d sockets: %w", pid, err)
		}
		found, err := parseProcNetTCP(b, inodes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, p := range found {
			ports[p] = true
		}
	}
	return ports, nil
}

// parseProcNetTCP returns the local ports of the sockets in a
// /proc/net/tcp table whose inode is among inodes. A line is
// "sl local_address rem_address st ... uid timeout inode ...", the
// addresses hex IP:port.
func parseProcNetTCP(b []byte, inodes map[uint64]bool) ([]int, error) {
	var ports []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first {
			first = false
			if len(f) > 0 && f[0] == "sl" {
				continue // the header
			}
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %q: want at least 10 fields", sc.Text())
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: inode: %w", sc.Text(), err)
		}
		if !inodes[ino] {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			return nil, fmt.Errorf("line %q: local address without a port", sc.Text())
		}
		port, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil {
			return nil, fmt.Errorf("line %q: local port: %w", sc.Text(), err)
		}
		ports = append(ports, int(port))
	}
	return ports, sc.Err()
}
