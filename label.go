package standby

import "fmt"

// Label and annotation limits (seed 001).
const (
	MaxLabelKeyLen      = 59
	MaxLabelValueLen    = 63
	MaxAnnotationValue  = 64 << 10
	MaxMetadataBytes    = 64 << 10
	MaxLabelsPerObject  = 64
	MaxAnnotationsCount = 64
)

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLabelInner(c byte) bool { return isAlnum(c) || c == '-' || c == '_' || c == '.' }

// validToken reports whether s begins and ends with [a-zA-Z0-9] and has only
// [-_.a-zA-Z0-9] between.
func validToken(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !isLabelInner(s[i]) {
			return false
		}
	}
	return true
}

// ValidateLabelKey checks a label or annotation key: 1–59 characters,
// beginning and ending with an alphanumeric, [-_.a-zA-Z0-9] between.
func ValidateLabelKey(k string) error {
	if len(k) == 0 || len(k) > MaxLabelKeyLen || !validToken(k) {
		return fmt.Errorf("key %q must be 1-%d characters, begin and end with [a-zA-Z0-9] and contain only [-_.a-zA-Z0-9]", k, MaxLabelKeyLen)
	}
	return nil
}

// ValidateLabelValue checks a label value: 0–63 characters; unless empty it
// begins and ends with an alphanumeric, with [-_.a-zA-Z0-9] between.
func ValidateLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > MaxLabelValueLen || !validToken(v) {
		return fmt.Errorf("value %q must be 0-%d characters, begin and end with [a-zA-Z0-9] and contain only [-_.a-zA-Z0-9]", v, MaxLabelValueLen)
	}
	return nil
}

// ValidateAnnotationValue checks an annotation value: free text up to 64 KiB.
func ValidateAnnotationValue(v string) error {
	if len(v) > MaxAnnotationValue {
		return fmt.Errorf("value must be at most %d bytes", MaxAnnotationValue)
	}
	return nil
}

// ValidateLabels checks a label map under the field name, adding one error
// per bad entry (field "labels.<key>").
func ValidateLabels(field string, labels map[string]string, errs *Errors) {
	if len(labels) > MaxLabelsPerObject {
		errs.Add(field, "at most %d labels", MaxLabelsPerObject)
	}
	for k, v := range labels {
		if err := ValidateLabelKey(k); err != nil {
			errs.Add(field+"."+k, "%v", err)
			continue
		}
		if err := ValidateLabelValue(v); err != nil {
			errs.Add(field+"."+k, "%v", err)
		}
	}
}

// ValidateAnnotations checks an annotation map like ValidateLabels.
func ValidateAnnotations(field string, ann map[string]string, errs *Errors) {
	if len(ann) > MaxAnnotationsCount {
		errs.Add(field, "at most %d annotations", MaxAnnotationsCount)
	}
	for k, v := range ann {
		if err := ValidateLabelKey(k); err != nil {
			errs.Add(field+"."+k, "%v", err)
			continue
		}
		if err := ValidateAnnotationValue(v); err != nil {
			errs.Add(field+"."+k, "%v", err)
		}
	}
}

// Selector picks ready instances by labels (seed 001): every label given
// must be present with the same value.
type Selector struct {
	Labels map[string]string `json:"labels"`
}

// Matches reports whether the effective labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool {
	for k, v := range s.Labels {
		got, ok := labels[k]
		if !ok || got != v {
			return false
		}
	}
	return true
}

// MatchesOverlay reports whether the selector matches base overlaid by over
// (an instance's own labels win over its pool's), without building the
// merged map.
func (s Selector) MatchesOverlay(base, over map[string]string) bool {
	for k, v := range s.Labels {
		got, ok := over[k]
		if !ok {
			got, ok = base[k]
		}
		if !ok || got != v {
			return false
		}
	}
	return true
}

// SelectFirst returns the index of the selector that decides a checkout: the
// first one that any candidate matches; match(i, j) tells whether candidate
// j matches selector i. With no selectors every candidate matches selector
// -1. It returns the selector index and the first matching candidate, or
// (-2, -1) when nothing matches.
func SelectFirst(selectors []Selector, n int, match func(sel Selector, j int) bool) (int, int) {
	if len(selectors) == 0 {
		if n > 0 {
			return -1, 0
		}
		return -2, -1
	}
	for i, sel := range selectors {
		for j := 0; j < n; j++ {
			if match(sel, j) {
				return i, j
			}
		}
	}
	return -2, -1
}
