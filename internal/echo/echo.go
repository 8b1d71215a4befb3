// Package echo holds the processes of the built-in templates, run by the
// standby binary itself: the echo template's HTTP server and the base
// template's idle process.
package echo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// maxBody is the most of a request body the echo server reads back.
const maxBody = 1 << 20

// shutdownGrace bounds how long Serve waits for requests in flight after
// ctx ends (an instance gets SIGTERM, then SIGKILL after the agent's grace).
const shutdownGrace = 3 * time.Second

// Request is what the echo server answers to any request but GET /healthz.
type Request struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      map[string][]string `json:"query"`
	Headers    map[string]string   `json:"headers"`
	Body       string              `json:"body"`
	InstanceID string              `json:"instance_id"`
}

// Serve runs the echo template's HTTP server on addr until ctx ends, then
// shuts down gracefully and returns nil. GET /healthz answers 200 "ok";
// any other request gets 200 and a JSON Request describing it, with the
// instance id from $STANDBY_INSTANCE_ID.
func Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           Handler(os.Getenv("STANDBY_INSTANCE_ID")),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Handler is the echo server's handler for the instance instanceID.
func Handler(instanceID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, "cannot read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		headers := make(map[string]string, len(r.Header)+1)
		for k, v := range r.Header {
			headers[k] = strings.Join(v, ", ")
		}
		// Go moves Host out of the header map; an echo should show it.
		headers["Host"] = r.Host
		query := map[string][]string(r.URL.Query())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Request{
			Method:     r.Method,
			Path:       r.URL.Path,
			Query:      query,
			Headers:    headers,
			Body:       string(body),
			InstanceID: instanceID,
		})
	})
}

// Idle blocks until ctx ends and returns nil: the base template's process,
// which does nothing but stay up until it is stopped.
func Idle(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
