package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Reader streams the entries of a recording, from one file or from a
// rotated set, oldest first. It is not safe for concurrent use.
type Reader struct {
	files  []string
	hdr    Header
	warn   func(string)
	cur    int // index in files of the open file
	f      *os.File
	br     *bufio.Reader
	lineNo int
	runHdr Header // header of the run being read
}

// Open reads the recording at path. Given FILE, it reads every rotated
// file FILE.N ... FILE.1 and then FILE, the whole recording in time order;
// given one rotated file (FILE.2), that file alone. warn, which may be nil,
// receives what is tolerated, such as a last line cut short by an engine
// killed mid-write.
func Open(path string, warn func(string)) (*Reader, error) {
	if warn == nil {
		warn = func(string) {}
	}
	var files []string
	ks, err := rotatedFiles(path)
	if err != nil {
		return nil, fmt.Errorf("open recording %s: %w", path, err)
	}
	for _, k := range ks {
		files = append(files, rotated(path, k))
	}
	if _, err := os.Stat(path); err == nil || len(files) == 0 {
		files = append(files, path)
	}
	r := &Reader{files: files, warn: warn, cur: -1}
	h, err := r.next()
	if err != nil {
		r.Close()
		return nil, err
	}
	r.hdr, r.runHdr = h, h
	return r, nil
}

// Header is the header of the recording's first run.
func (r *Reader) Header() Header { return r.hdr }

// Files are the files read, in order.
func (r *Reader) Files() []string { return r.files }

// next opens the next file and reads its header.
func (r *Reader) next() (Header, error) {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.cur++
	if r.cur >= len(r.files) {
		return Header{}, io.EOF
	}
	name := r.files[r.cur]
	f, err := os.Open(name)
	if err != nil {
		return Header{}, fmt.Errorf("open recording: %w", err)
	}
	r.f, r.br, r.lineNo = f, bufio.NewReaderSize(f, 256<<10), 0
	raw, complete, err := r.line()
	if err == io.EOF {
		return Header{}, fmt.Errorf("%s: empty file: %w", name, errNotRecording)
	}
	if err != nil {
		return Header{}, err
	}
	e, err := decode(raw)
	switch {
	case err != nil && !complete:
		return Header{}, fmt.Errorf("%s:1: %w (the file holds one partial line)", name, errNotRecording)
	case err != nil && bytes.Contains(raw, []byte(`"happen"`)):
		return Header{}, fmt.Errorf("%s:1: bad recording header: %w", name, err)
	case err != nil || e.Kind != Run:
		return Header{}, fmt.Errorf("%s:1: %w", name, errNotRecording)
	}
	return e.Header, nil
}

// line reads one line without its newline; complete is false for a last
// line with no newline.
func (r *Reader) line() (raw []byte, complete bool, err error) {
	raw, err = r.br.ReadBytes('\n')
	if len(raw) == 0 && err != nil {
		if errors.Is(err, io.EOF) {
			return nil, false, io.EOF
		}
		return nil, false, fmt.Errorf("read %s: %w", r.files[r.cur], err)
	}
	r.lineNo++
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("read %s: %w", r.files[r.cur], err)
	}
	complete = err == nil
	return bytes.TrimSuffix(raw, []byte{'\n'}), complete, nil
}

// Next returns the next entry, or io.EOF after the last. A corrupt line is
// an error naming its file:line; a last line of a file cut short (no
// newline, not valid) is skipped with a warning.
func (r *Reader) Next() (Entry, error) {
	for {
		if r.f == nil {
			return Entry{}, io.EOF
		}
		raw, complete, err := r.line()
		if err == io.EOF {
			h, err := r.next()
			if err != nil {
				return Entry{}, err
			}
			if !h.sameRun(r.runHdr) {
				r.runHdr = h
				return Entry{Kind: Run, Header: h, Pos: r.files[r.cur] + ":1"}, nil
			}
			continue
		}
		if err != nil {
			return Entry{}, err
		}
		pos := fmt.Sprintf("%s:%d", r.files[r.cur], r.lineNo)
		if len(bytes.TrimSpace(raw)) == 0 {
			if !complete {
				continue
			}
			return Entry{}, fmt.Errorf("%s: corrupt recording: empty line", pos)
		}
		e, err := decode(raw)
		if err != nil {
			if !complete {
				r.warn(fmt.Sprintf("%s: last line cut short (the engine stopped mid-write); ignored", pos))
				continue
			}
			return Entry{}, fmt.Errorf("%s: corrupt recording: %w", pos, err)
		}
		e.Pos = pos
		if e.Kind == Run {
			if e.Header.sameRun(r.runHdr) {
				continue
			}
			r.runHdr = e.Header
		}
		return e, nil
	}
}

// Close closes the file being read.
func (r *Reader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	r.cur = len(r.files)
	return err
}
