package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"

	"github.com/standbyhq/standby"
)

// replayedHeaders are the response headers kept with an idempotency record.
var replayedHeaders = []string{"Content-Type", "ETag", "Location", "Retry-After"}

// idempotent runs a POST under its Idempotency-Key: the first request with a
// key does the work and its response is kept; a retry with the same body
// gets that response again; another body is 422; a retry while the first
// still runs is 409.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, c *caller, h handlerFunc) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		s.writeError(w, r, standby.FieldError("Idempotency-Key", "must be at most 255 characters"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	sum := sha256.New()
	// The project acted in is part of the request: an admin retrying the
	// same body in another project is another request.
	for _, part := range []string{r.Method, r.URL.Path, c.project} {
		sum.Write([]byte(part))
		sum.Write([]byte{0})
	}
	sum.Write(body)
	hash := hex.EncodeToString(sum.Sum(nil))

	rec := &standby.IdempotencyRecord{Scope: c.key.ID, Key: key, RequestHash: hash, CreatedAt: s.clock.Now()}
	prev, err := s.store.ReserveIdempotencyKey(r.Context(), rec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if prev != nil {
		switch {
		case prev.RequestHash != hash:
			s.writeError(w, r, standby.Errorf(standby.EIdempotencyKeyReused, "Idempotency-Key %q was used with another request", key))
		case prev.Status == 0:
			s.writeError(w, r, standby.Errorf(standby.EConflict, "a request with Idempotency-Key %q is still in progress", key))
		default:
			for k, v := range prev.Headers {
				w.Header().Set(k, v)
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(prev.Status)
			_, _ = w.Write(prev.Body)
		}
		return
	}

	cw := &captureWriter{ResponseWriter: w}
	if err := h(cw, r, c); err != nil {
		s.writeError(cw, r, err)
	}
	// The response is on its way; keep or forget the key whatever the
	// client does now.
	ctx := context.WithoutCancel(r.Context())
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	if status >= 500 {
		// A failure that did no work: let a retry run again.
		if err := s.store.ReleaseIdempotencyKey(ctx, rec.Scope, rec.Key); err != nil {
			s.log.Error("release idempotency key", "err", err)
		}
		return
	}
	rec.Status = status
	rec.Body = cw.body.Bytes()
	rec.Headers = map[string]string{}
	for _, k := range replayedHeaders {
		if v := cw.Header().Get(k); v != "" {
			rec.Headers[k] = v
		}
	}
	if err := s.store.CompleteIdempotencyKey(ctx, rec); err != nil {
		s.log.Error("complete idempotency key", "status", strconv.Itoa(status), "err", err)
	}
}

// captureWriter keeps a copy of the response for the idempotency record.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
