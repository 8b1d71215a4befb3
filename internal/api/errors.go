package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/standbyhq/standby"
)

// errorEntry is one element of the error envelope.
type errorEntry struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
}

// errorEnvelope is the body of every error response.
type errorEnvelope struct {
	Errors []errorEntry `json:"errors"`
}

// statusOf maps an error code to its HTTP status. This is the one place
// that knows the mapping; handlers only set codes.
func statusOf(code string) int {
	switch code {
	case standby.EBadRequest:
		return http.StatusBadRequest
	case standby.EUnauthorized:
		return http.StatusUnauthorized
	case standby.EForbidden, standby.EActionNotAllowed:
		return http.StatusForbidden
	case standby.ENotFound:
		return http.StatusNotFound
	case standby.EConflict:
		return http.StatusConflict
	case standby.EPreconditionFailed:
		return http.StatusPreconditionFailed
	case standby.EValidation, standby.EIdempotencyKeyReused:
		return http.StatusUnprocessableEntity
	case standby.ERateLimited:
		return http.StatusTooManyRequests
	case standby.EWarmPoolUnavailable, standby.EUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes err as the error envelope. Errors without a code (and
// the internal code) are logged in full and shown as a bare 500, so no SQL,
// stack or secret ever reaches a client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	list := standby.ErrorList(err)
	if len(list) == 0 || list[0].Code == standby.EInternal || statusOf(list[0].Code) == http.StatusInternalServerError {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away; nobody reads the answer.
			s.log.Debug("request canceled", "method", r.Method, "path", r.URL.Path)
		} else {
			s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeJSON(w, http.StatusInternalServerError, errorEnvelope{Errors: []errorEntry{{
			Code:  standby.EInternal,
			Title: http.StatusText(http.StatusInternalServerError),
		}}})
		return
	}
	status := statusOf(list[0].Code)
	env := errorEnvelope{Errors: make([]errorEntry, 0, len(list))}
	for _, e := range list {
		env.Errors = append(env.Errors, errorEntry{
			Code:   e.Code,
			Title:  http.StatusText(statusOf(e.Code)),
			Detail: e.Message,
			Field:  e.Field,
		})
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 {
		s.log.Debug("request unavailable", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("code", list[0].Code))
	}
	writeJSON(w, status, env)
}
