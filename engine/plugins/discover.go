package plugins

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Prefix starts the file name of every plugin executable.
const Prefix = "happen-plugin-"

// reName is what a rule may call a plugin, so only files a rule can name
// are taken.
var reName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// candidate is one happen-plugin-* file. err says why it cannot run.
type candidate struct {
	name     string
	path     string // the file in dir, as named there
	real     string // path with symlinks resolved; what is run
	checksum []byte
	err      error
}

// discover lists the plugin files directly in dir. A file that cannot be a
// plugin (not executable, a folder, a link leading out of dir) is returned
// with its error so the operator learns why it is ignored.
func discover(dir string) ([]candidate, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plugins: read plugin folder %s: %w", dir, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: resolve plugin folder %s: %w", dir, err)
	}
	realDir, err = filepath.Abs(realDir)
	if err != nil {
		return nil, fmt.Errorf("plugins: resolve plugin folder %s: %w", dir, err)
	}
	var out []candidate
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), Prefix)
		if !ok {
			continue
		}
		c := candidate{name: name, path: filepath.Join(dir, e.Name())}
		if !reName.MatchString(name) {
			c.err = fmt.Errorf("plugin file %s: name %q is not one a rule can use (lowercase letters, digits, - and _)", c.path, name)
			out = append(out, c)
			continue
		}
		c.real, c.checksum, c.err = check(c.path, realDir)
		out = append(out, c)
	}
	return out, nil
}

// check resolves path, which must stay inside realDir, and returns the
// file's SHA-256 for verifying it again at each start.
func check(path, realDir string) (string, []byte, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, fmt.Errorf("plugin file %s: %w", path, err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return "", nil, fmt.Errorf("plugin file %s: %w", path, err)
	}
	if filepath.Dir(real) != realDir {
		return "", nil, fmt.Errorf("plugin file %s: links to %s, outside the plugin folder", path, real)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", nil, fmt.Errorf("plugin file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", nil, fmt.Errorf("plugin file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return "", nil, fmt.Errorf("plugin file %s: not executable (mode %v)", path, st.Mode().Perm())
	}
	f, err := os.Open(real)
	if err != nil {
		return "", nil, fmt.Errorf("plugin file %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", nil, fmt.Errorf("plugin file %s: read: %w", path, err)
	}
	return real, h.Sum(nil), nil
}
