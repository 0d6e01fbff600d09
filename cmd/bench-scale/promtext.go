package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// sampleMetric is the engine's histogram of the time one sample takes
// (engine/metrics.go).
const sampleMetric = "happen_sample_duration_seconds"

// scrape is the engine's sample histogram and sample counts at one moment.
type scrape struct {
	buckets []bucket // cumulative, by upper bound, +Inf last
	sum     float64
	count   float64
	ok, bad float64 // happen_samples_total by result
}

type bucket struct {
	le    float64
	count float64
}

// parseScrape reads what it needs from Prometheus text exposition.
func parseScrape(b []byte) (scrape, error) {
	var s scrape
	var seen bool
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, valStr := line[:sp], line[sp+1:]
		val, err := strconv.ParseFloat(valStr, 64)
		if err != nil {
			return s, fmt.Errorf("metrics line %q: %w", line, err)
		}
		name, labels, _ := strings.Cut(series, "{")
		switch name {
		case sampleMetric + "_bucket":
			le, ok := label(labels, "le")
			if !ok {
				return s, fmt.Errorf("metrics line %q: bucket without le", line)
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return s, fmt.Errorf("metrics line %q: le: %w", line, err)
			}
			s.buckets = append(s.buckets, bucket{le: bound, count: val})
			seen = true
		case sampleMetric + "_sum":
			s.sum = val
		case sampleMetric + "_count":
			s.count = val
		case "happen_samples_total":
			switch r, _ := label(labels, "result"); r {
			case "ok":
				s.ok = val
			case "error":
				s.bad = val
			}
		}
	}
	if !seen {
		return s, errors.New("no " + sampleMetric + " in the engine's metrics")
	}
	slices.SortFunc(s.buckets, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return s, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// label returns a label's value from `a="x",b="y"}`.
func label(labels, name string) (string, bool) {
	for part := range strings.SplitSeq(strings.TrimSuffix(labels, "}"), ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// since returns the histogram of the observations made between prev and s.
func (s scrape) since(prev scrape) (scrape, error) {
	if len(prev.buckets) != len(s.buckets) {
		return s, errors.New("sample histogram changed its buckets between scrapes")
	}
	d := scrape{sum: s.sum - prev.sum, count: s.count - prev.count, ok: s.ok - prev.ok, bad: s.bad - prev.bad}
	for i, b := range s.buckets {
		if b.le != prev.buckets[i].le {
			return s, errors.New("sample histogram changed its buckets between scrapes")
		}
		d.buckets = append(d.buckets, bucket{le: b.le, count: b.count - prev.buckets[i].count})
	}
	if d.count < 0 {
		return s, errors.New("sample count went down between scrapes: the engine restarted")
	}
	return d, nil
}

// mean is the exact mean observation, NaN without observations.
func (s scrape) mean() float64 {
	if s.count <= 0 {
		return math.NaN()
	}
	return s.sum / s.count
}

// quantile estimates the q-quantile the way Prometheus's
// histogram_quantile does: linearly within the bucket it falls in, so it is
// only as fine as the buckets.
func (s scrape) quantile(q float64) float64 {
	if len(s.buckets) == 0 || s.count <= 0 {
		return math.NaN()
	}
	total := s.buckets[len(s.buckets)-1].count
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range s.buckets {
		if b.count >= rank && b.count > below {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return math.NaN()
				}
				return s.buckets[i-1].le // the highest finite bound
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}
