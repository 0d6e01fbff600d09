package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// syntaxLine matches the line yaml.v3 puts in its syntax errors. It omits
// the line when the fault is on the first one (its marks are 0-based and
// it tests them against 0), so no line means line 1.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// SyntaxFault returns the line at fault, 1-based, and the message without
// its "yaml: " prefix, of err, a yaml.v3 syntax error from parsing data.
// yaml.v3 reports no column; and for a fault found while parsing a block
// it reports where the block began, so the line is found again as the
// first at which data, cut after it, fails the same way.
func SyntaxFault(data []byte, err error) (line int, msg string) {
	line, msg = splitSyntaxError(err)
	if l := faultLine(data, msg); l > 0 {
		line = l
	}
	return line, msg
}

// splitSyntaxError returns the line yaml.v3 named (1 when it named none)
// and its message without the prefix.
func splitSyntaxError(err error) (int, string) {
	msg := err.Error()
	line := 1
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line = n
		}
		return line, msg[len(m[0]):]
	}
	return line, strings.TrimPrefix(msg, "yaml: ")
}

// faultLine finds the fewest whole lines of data that fail to parse with
// msg, by bisection (a handful of parses, on the error path only); 0 if
// the whole does not fail so.
func faultLine(data []byte, msg string) int {
	var ends []int // ends[i]: offset just after line i+1
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	fails := func(n int) bool {
		err := decodeAll(data[:ends[n-1]])
		if err == nil {
			return false
		}
		_, m := splitSyntaxError(err)
		return m == msg
	}
	if !fails(len(ends)) {
		return 0
	}
	lo, hi := 1, len(ends) // fails(hi) holds
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// decodeAll parses every document of data and returns the first error.
func decodeAll(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: malformed document: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
