package webview

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of /api/nodes.
const (
	DefaultLimit = 100
	MaxLimit     = 500 // a page is for a screen, not an export: /api/status has every node
	maxQuery     = 200
)

// nodesPage is the answer of /api/nodes.
type nodesPage struct {
	Tick   uint64    `json:"tick"`
	At     time.Time `json:"at"`
	Total  int       `json:"total"` // nodes matching group and q
	Offset int       `json:"offset"`
	Limit  int       `json:"limit"`
	Sort   string    `json:"sort"`
	// History is the sparklines' shared axis: one point per Step seconds,
	// Points of them, the newest at At. A row's points are right-aligned
	// on it.
	History struct {
		Step   float64   `json:"step"`
		Points int       `json:"points"`
		At     time.Time `json:"at"`
	} `json:"history"`
	Nodes []nodeRow `json:"nodes"`
}

// parseQuery reads /api/nodes parameters; an error names the bad one.
func parseQuery(v url.Values) (query, error) {
	q := query{limit: DefaultLimit, sort: SortTrouble}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("offset %q: want a whole number, 0 or more", s)
		}
		q.offset = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("limit %q: want a whole number from 1 to %d", s, MaxLimit)
		}
		q.limit = n
	}
	if s := v.Get("sort"); s != "" {
		if !slices.Contains(sorts, s) {
			return q, fmt.Errorf("sort %q: want one of %s", s, strings.Join(sorts, ", "))
		}
		q.sort = s
	}
	if v.Has("group") {
		q.group, q.byGroup = v.Get("group"), true
	}
	q.q = strings.ToLower(strings.TrimSpace(v.Get("q")))
	if len(q.q) > maxQuery {
		return q, fmt.Errorf("q: %d bytes, want at most %d", len(q.q), maxQuery)
	}
	return q, nil
}

// serveNodes answers one page of the node list, filtered and sorted as
// asked, each row with its sparkline.
func (v *view) serveNodes(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	s := v.current()
	rows, total := s.page(q)
	hist := v.src.LagHistory(keys(rows))
	p := nodesPage{Tick: s.tick, At: s.status.At, Total: total, Offset: q.offset, Limit: q.limit, Sort: q.sort,
		Nodes: make([]nodeRow, len(rows))}
	p.History.Step, p.History.At = hist.Step.Seconds(), hist.At
	for i, row := range rows {
		var pts []float32
		if i < len(hist.Series) {
			pts = hist.Series[i]
			p.History.Points = max(p.History.Points, len(pts))
		}
		p.Nodes[i] = newNodeRow(row, pts)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(&p); err != nil {
		v.opts.Logger.Debug("web view: write node page", "error", err)
	}
}
