package api

import (
	"net/http"

	"github.com/standbyhq/standby"
)

// valueRequest is the body of PUT …/labels/{key} and …/annotations/{key}.
type valueRequest struct {
	Value string `json:"value"`
}

// kv says which map a …/labels/{key} or …/annotations/{key} route edits;
// the two differ only in their value rule and limit.
type kv struct {
	annotation bool
}

func (k kv) limit() int {
	if k.annotation {
		return standby.MaxAnnotationsCount
	}
	return standby.MaxLabelsPerObject
}

// decodePut reads and checks the key (path) and value (body) of a PUT.
func (k kv) decodePut(r *http.Request) (key, value string, err error) {
	key = r.PathValue("key")
	o, err := decodeBody(r)
	if err != nil {
		return "", "", err
	}
	if !get(o, "value", &value) && !o.has("value") {
		o.add("value", "is required")
	}
	o.finish()
	var domain standby.Errors
	if err := standby.ValidateLabelKey(key); err != nil {
		domain.Add("key", "%v", err)
	}
	if k.annotation {
		err = standby.ValidateAnnotationValue(value)
	} else {
		err = standby.ValidateLabelValue(value)
	}
	if err != nil {
		domain.Add("value", "%v", err)
	}
	return key, value, combine(*o.errs, domain.Err())
}

// set puts key=value into *m, refusing to grow past the limit.
func (k kv) set(m *map[string]string, key, value string) error {
	if *m == nil {
		*m = map[string]string{}
	}
	if _, ok := (*m)[key]; !ok && len(*m) >= k.limit() {
		return standby.FieldError("key", "at most %d entries", k.limit())
	}
	(*m)[key] = value
	return nil
}

// pick returns the labels or annotations map of a resource.
func (k kv) pick(labels, annotations *map[string]string) *map[string]string {
	if k.annotation {
		return annotations
	}
	return labels
}
