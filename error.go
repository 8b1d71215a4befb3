package standby

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes of the API contract. internal/api maps each to an HTTP status
// in one place; everything else only sets the code.
const (
	EBadRequest           = "bad_request"            // 400: malformed JSON or query
	EUnauthorized         = "unauthorized"           // 401
	EForbidden            = "forbidden"              // 403: role may not do this
	EActionNotAllowed     = "action_not_allowed"     // 403: resource's allowed_actions
	ENotFound             = "not_found"              // 404
	EConflict             = "conflict"               // 409: state conflict
	EPreconditionFailed   = "precondition_failed"    // 412: If-Match mismatch
	EValidation           = "validation_failed"      // 422
	EIdempotencyKeyReused = "idempotency_key_reused" // 422
	ERateLimited          = "rate_limited"           // 429
	EWarmPoolUnavailable  = "warm_pool_unavailable"  // 503
	EUnavailable          = "unavailable"            // 503
	EInternal             = "internal"               // 500
)

// Error is an error the user may see: a code from the list above, a message
// safe to show, and the request field it is about, if any.
type Error struct {
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("standby error: code=%s field=%s message=%s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("standby error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns a validation_failed *Error about one field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EValidation, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Errors is a list of user-facing errors reported together, one per bad
// field. Validation returns every bad field at once, never just the first.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Add appends a field error.
func (es *Errors) Add(field, format string, args ...any) {
	*es = append(*es, FieldError(field, format, args...))
}

// Err returns nil when the list is empty, else the list as an error.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// ErrorCode returns the code of err, EInternal for an error without one, and
// "" for nil. For Errors it returns the first entry's code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var es Errors
	if errors.As(err, &es) && len(es) > 0 {
		return es[0].Code
	}
	return EInternal
}

// ErrorList returns the user-facing entries of err: the entries of an Errors,
// the one *Error, or nil when err carries no code (an internal error).
func ErrorList(err error) []*Error {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

// IsCode reports whether err carries the code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }
