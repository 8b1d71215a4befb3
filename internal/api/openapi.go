package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// openapi serves an OpenAPI 3.0 document generated from the route table, so
// it cannot drift from the router.
func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, buildOpenAPI(s.routes))
	return nil
}

type obj = map[string]any

func buildOpenAPI(routes []route) obj {
	paths := obj{}
	for _, rt := range routes {
		item, _ := paths[rt.pattern].(obj)
		if item == nil {
			item = obj{}
			paths[rt.pattern] = item
		}
		item[strings.ToLower(rt.method)] = operation(rt)
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":       "standby API",
			"version":     "1",
			"description": "Warm pools of pre-started instances handed out as sandboxes. Errors use the envelope {\"errors\":[{code,title,detail,field}]}.",
		},
		"security": []any{obj{"bearer": []any{}}},
		"components": obj{
			"securitySchemes": obj{
				"bearer": obj{"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
			},
			"schemas": obj{
				"Error": schemaOf(reflect.TypeFor[errorEnvelope]()),
			},
		},
		"paths": paths,
	}
}

func operation(rt route) obj {
	op := obj{
		"summary":     rt.summary,
		"operationId": operationID(rt),
	}
	var params []any
	for _, name := range pathParamNames(rt.pattern) {
		params = append(params, obj{"name": name, "in": "path", "required": true, "schema": obj{"type": "string"}})
	}
	if rt.doc.list {
		params = append(params,
			obj{"name": "page_size", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
			obj{"name": "page_token", "in": "query", "schema": obj{"type": "string"}})
	}
	if rt.doc.labels {
		params = append(params, obj{"name": "label", "in": "query", "description": "k=v label filter (repeatable).",
			"schema": obj{"type": "array", "items": obj{"type": "string"}}, "style": "form", "explode": true})
	}
	for _, q := range rt.doc.query {
		params = append(params, obj{"name": q.name, "in": "query", "description": q.description, "schema": obj{"type": q.typ}})
	}
	if rt.access != public {
		params = append(params, obj{"name": headerProject, "in": "header", "description": "Admin keys only: act in this project.", "schema": obj{"type": "string"}})
		if rt.method == "POST" {
			params = append(params, obj{"name": "Idempotency-Key", "in": "header", "description": "Replays the first response to the same request for 24 h.", "schema": obj{"type": "string"}})
		}
		if rt.method != "GET" {
			params = append(params, obj{"name": "If-Match", "in": "header", "description": `"<version>": 412 when the resource changed.`, "schema": obj{"type": "string"}})
		}
		if rt.method == "PATCH" {
			params = append(params, obj{"name": "Prefer", "in": "header", "description": "return=minimal answers 204 without a body.", "schema": obj{"type": "string"}})
		}
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	if rt.doc.binary && rt.method != "GET" {
		op["requestBody"] = obj{
			"required": true,
			"content":  obj{"application/octet-stream": obj{"schema": obj{"type": "string", "format": "binary"}}},
		}
	}
	if rt.doc.body != nil {
		op["requestBody"] = obj{
			"required": true,
			"content":  obj{"application/json": obj{"schema": schemaOf(reflect.TypeOf(rt.doc.body))}},
		}
	}
	ok := obj{"description": http.StatusText(rt.doc.status)}
	switch {
	case rt.doc.text:
		ok["content"] = obj{"text/plain": obj{"schema": obj{"type": "string"}}}
	case rt.doc.binary && rt.method == "GET":
		ok["content"] = obj{"application/octet-stream": obj{"schema": obj{"type": "string", "format": "binary"}}}
	case rt.doc.resp != nil:
		schema := schemaOf(reflect.TypeOf(rt.doc.resp))
		if rt.doc.list {
			schema = obj{
				"type":     "object",
				"required": []string{"items", "next_page_token"},
				"properties": obj{
					"items":           obj{"type": "array", "items": schema},
					"next_page_token": obj{"type": "string", "nullable": true},
				},
			}
		}
		ok["content"] = obj{"application/json": obj{"schema": schema}}
	}
	op["responses"] = obj{
		strconv.Itoa(rt.doc.status): ok,
		"default": obj{
			"description": "Error",
			"content":     obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/Error"}}},
		},
	}
	if rt.access == public {
		op["security"] = []any{}
	}
	return op
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.FieldsFunc(rt.pattern, func(r rune) bool { return r == '/' || r == '-' || r == '.' }) {
		part = strings.Trim(part, "{}")
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// schemaOf derives a JSON schema from a Go type and its json tags.
func schemaOf(t reflect.Type) obj {
	switch t {
	case timeType:
		return obj{"type": "string", "format": "date-time"}
	case rawType:
		return obj{"type": "object", "additionalProperties": true}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := schemaOf(t.Elem())
		s["nullable"] = true
		return s
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return obj{"type": "integer"}
	case reflect.Int64, reflect.Uint64:
		return obj{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.Slice, reflect.Array:
		return obj{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return obj{"type": "object", "additionalProperties": true}
		}
		return obj{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Interface:
		return obj{}
	case reflect.Struct:
		props := obj{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s := schemaOf(f.Type)
			if strings.Contains(opts, "omitempty") {
				s["description"] = "Omitted when empty."
			}
			props[name] = s
		}
		return obj{"type": "object", "properties": props}
	}
	return obj{}
}
