package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/standbyhq/standby"
)

// writeJSON writes v with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this is a programming error.
		http.Error(w, `{"errors":[{"code":"internal","title":"Internal Server Error"}]}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeVersioned writes a mutable resource with its ETag.
func writeVersioned(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, status, v)
}

// writeUpdated answers a PATCH: 204 without a body when the client asked for
// Prefer: return=minimal, else 200 with the resource.
func writeUpdated(w http.ResponseWriter, r *http.Request, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	if preferMinimal(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func preferMinimal(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(p), " ", ""), "return=minimal") {
				return true
			}
		}
	}
	return false
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// checkIfMatch returns precondition_failed when the request has an If-Match
// that does not name version. Call it inside the store's Update function so
// the check and the write are one transaction.
func checkIfMatch(r *http.Request, version int64) error {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag(version) {
			return nil
		}
	}
	return standby.Errorf(standby.EPreconditionFailed, "If-Match %s does not match the current version %s", h, etag(version))
}

// list is the body of every list response.
type list[T any] struct {
	Items         []T     `json:"items"`
	NextPageToken *string `json:"next_page_token"`
}

func writeList[T any](w http.ResponseWriter, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	l := list[T]{Items: items}
	if next != "" {
		l.NextPageToken = &next
	}
	writeJSON(w, http.StatusOK, l)
}

// query collects the query parameter errors of one request.
type query struct {
	r    *http.Request
	errs standby.Errors
}

func newQuery(r *http.Request) *query { return &query{r: r} }

// page reads page_size (1–1000, default 100) and page_token.
func (q *query) page() standby.Page {
	p := standby.Page{Size: standby.DefaultPageSize, Token: q.r.URL.Query().Get("page_token")}
	if v := q.r.URL.Query().Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > standby.MaxPageSize {
			q.errs.Add("page_size", "must be an integer from 1 to %d", standby.MaxPageSize)
		} else {
			p.Size = n
		}
	}
	return p
}

// labels reads repeatable label=k=v filters.
func (q *query) labels() map[string]string {
	vals := q.r.URL.Query()["label"]
	if len(vals) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || standby.ValidateLabelKey(k) != nil {
			q.errs.Add("label", "must be key=value with a valid label key, got %q", v)
			continue
		}
		m[k] = val
	}
	return m
}

// states reads repeatable (or comma-separated) state filters from allowed.
func (q *query) states(allowed ...string) []string {
	var out []string
	for _, v := range q.r.URL.Query()["state"] {
		for _, s := range strings.Split(v, ",") {
			ok := false
			for _, a := range allowed {
				ok = ok || s == a
			}
			if !ok {
				q.errs.Add("state", "must be one of %s", strings.Join(allowed, ", "))
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// boolean reads a true/false parameter.
func (q *query) boolean(name string) bool {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		q.errs.Add(name, "must be true or false")
	}
	return b
}

func (q *query) err() error { return q.errs.Err() }
