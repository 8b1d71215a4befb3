package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/standbyhq/standby"
)

// maxBodyBytes bounds a request body: builds carry files, the rest is small.
const maxBodyBytes = 16 << 20

// object is a JSON object being decoded field by field, so that every
// unknown and every wrongly typed field gets its own 422 entry instead of
// the first one stopping the decode.
type object struct {
	raw    map[string]json.RawMessage
	prefix string // "warm_pool." for nested objects
	used   map[string]bool
	errs   *standby.Errors
}

// readBody reads the whole (bounded) request body.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, standby.Errorf(standby.EBadRequest, "request body is larger than %d bytes", maxBodyBytes)
		}
		return nil, standby.Errorf(standby.EBadRequest, "reading request body: %v", err)
	}
	return b, nil
}

// decodeBody reads the request body as a JSON object: 400 for malformed JSON
// or anything but an object.
func decodeBody(r *http.Request) (*object, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	return parseObject(b, "", new(standby.Errors))
}

func parseObject(b []byte, prefix string, errs *standby.Errors) (*object, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, standby.Errorf(standby.EBadRequest, "request body must be a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, standby.Errorf(standby.EBadRequest, "malformed JSON: %v", err)
	}
	return &object{raw: raw, prefix: prefix, used: map[string]bool{}, errs: errs}, nil
}

// has reports whether the field is present (null included) and marks it
// known.
func (o *object) has(name string) bool {
	o.used[name] = true
	_, ok := o.raw[name]
	return ok
}

// isNull reports whether the field is present and null.
func (o *object) isNull(name string) bool {
	v, ok := o.raw[name]
	return ok && string(bytes.TrimSpace(v)) == "null"
}

// add records a validation error about a field of this object.
func (o *object) add(name, format string, args ...any) {
	o.errs.Add(o.prefix+name, format, args...)
}

// get decodes a non-nullable field into dst. It reports whether the field
// was present and decoded; null and wrong types are 422 entries.
func get[T any](o *object, name string, dst *T) bool {
	if !o.has(name) {
		return false
	}
	if o.isNull(name) {
		o.add(name, "must not be null")
		return false
	}
	var v T
	if err := strictUnmarshal(o.raw[name], &v); err != nil {
		o.typeError(name, err, reflect.TypeOf(v))
		return false
	}
	*dst = v
	return true
}

// getNullable decodes a nullable field: null sets *dst to nil. It reports
// whether the field was present and well typed.
func getNullable[T any](o *object, name string, dst **T) bool {
	if !o.has(name) {
		return false
	}
	if o.isNull(name) {
		*dst = nil
		return true
	}
	var v T
	if err := strictUnmarshal(o.raw[name], &v); err != nil {
		o.typeError(name, err, reflect.TypeOf(v))
		return false
	}
	*dst = &v
	return true
}

// sub returns a nested object field for field-by-field decoding, or nil when
// it is absent, null (an error unless nullOK) or not an object.
func (o *object) sub(name string, nullOK bool) *object {
	if !o.has(name) {
		return nil
	}
	if o.isNull(name) {
		if !nullOK {
			o.add(name, "must not be null")
		}
		return nil
	}
	so, err := parseObject(o.raw[name], o.prefix+name+".", o.errs)
	if err != nil {
		o.add(name, "must be an object")
		return nil
	}
	return so
}

// rawObject returns a field that must be any JSON object, verbatim.
func (o *object) rawObject(name string) (json.RawMessage, bool) {
	if !o.has(name) {
		return nil, false
	}
	if o.isNull(name) {
		o.add(name, "must not be null")
		return nil, false
	}
	// parseObject's Unmarshal has checked the value is JSON and copied it.
	v := bytes.TrimSpace(o.raw[name])
	if len(v) == 0 || v[0] != '{' {
		o.add(name, "must be a JSON object")
		return nil, false
	}
	if len(v) > standby.MaxMetadataBytes {
		o.add(name, "must be at most %d bytes", standby.MaxMetadataBytes)
		return nil, false
	}
	return json.RawMessage(v), true
}

// finish adds one entry per field nobody asked for.
func (o *object) finish() {
	for _, k := range standby.SortedKeys(o.raw) {
		if !o.used[k] {
			o.add(k, "unknown field")
		}
	}
}

// typeError names the offending field as precisely as the decoder allows.
func (o *object) typeError(name string, err error, t reflect.Type) {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		o.add(name+"."+ute.Field, "must be %s", describeType(ute.Type))
		return
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		o.add(name+"."+strings.Trim(f, `"`), "unknown field")
		return
	}
	o.add(name, "must be %s", describeType(t))
}

// strictUnmarshal decodes rejecting unknown fields of nested structs.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// describeType says what a JSON value for t looks like.
func describeType(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + " values"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct:
		return "an object"
	}
	return "a valid value"
}

// combine merges decode errors with the domain validation's, leaving out
// domain entries about a field that already has a decode error (a wrongly
// typed name should not also be reported as empty).
func combine(decodeErrs standby.Errors, domain error) error {
	if domain == nil {
		return decodeErrs.Err()
	}
	list := standby.ErrorList(domain)
	if list == nil {
		return domain // internal
	}
	out := append(standby.Errors{}, decodeErrs...)
	for _, e := range list {
		if e.Field != "" && hasFieldError(decodeErrs, e.Field) {
			continue
		}
		out = append(out, e)
	}
	return out.Err()
}

func hasFieldError(errs standby.Errors, field string) bool {
	for _, e := range errs {
		if e.Field == field || strings.HasPrefix(field, e.Field+".") || strings.HasPrefix(e.Field, field+".") {
			return true
		}
	}
	return false
}
