// Package api serves standby's HTTP API (SPEC §1–§5, §8): routing, auth and
// roles, the error envelope, merge patch, ETag/If-Match, idempotency keys,
// paging and /openapi.json. It writes intent to the store and wakes the
// controller; it never talks to a concrete store or agent.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/standbyhq/standby"
)

// Controller is what the api needs of the controller (internal/controller
// implements it).
type Controller interface {
	// WakePool makes the controller look at this pool now (non-blocking).
	WakePool(poolID string)
	// PoolCheckedOut tells the controller a checkout took an instance of
	// the pool, so it refills; bursts may be coalesced (non-blocking).
	PoolCheckedOut(poolID string)
	// WakeAll makes the controller look at every pool now (a tag moved).
	WakeAll()
	// WakeSandbox makes the controller act on a sandbox's state now.
	WakeSandbox(sandboxID string)
	// Ready returns a channel closed at the next instance-ready event in
	// any pool.
	Ready() <-chan struct{}
	// ColdStart starts an instance of build for sb, waits for readiness
	// and stores the sandbox claiming it. unavailable when no host can
	// take it or it failed to start.
	ColdStart(ctx context.Context, sb *standby.Sandbox, build *standby.Build, env map[string]string) (*standby.Sandbox, error)
	// Agent returns the agent of a host, for logs.
	Agent(hostID string) (standby.Agent, bool)
}

// Config holds the server's dependencies.
type Config struct {
	// Store persists everything. Required.
	Store standby.Store
	// Controller is woken after writes and cold-starts sandboxes. Required.
	Controller Controller
	// Clock stamps records. Default standby.SystemClock.
	Clock standby.Clock
	// Logger logs. Default: discard.
	Logger *slog.Logger
	// Registry, when set, gets the request metrics and is served on
	// /metrics.
	Registry *prometheus.Registry
	// Ready reports whether the server can take traffic (/readyz); nil
	// means always ready.
	Ready func() error
}

// Server is the HTTP API.
type Server struct {
	store  standby.Store
	ctrl   Controller
	clock  standby.Clock
	log    *slog.Logger
	ready  func() error
	routes []route
	mux    *http.ServeMux
	cache  *hotCache

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// access says who may call a route.
type access int

const (
	public    access = iota // no key needed
	readRole                // any key
	writeRole               // developer or admin
	adminRole               // admin only
)

// handlerFunc is a route handler: it writes the success response itself and
// returns an error for the envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

// route is one row of the routing table; the mux, the openapi document and
// the route-walk test all read the same table.
type route struct {
	method  string
	pattern string
	access  access
	summary string
	handler handlerFunc
	// doc describes the request and response for /openapi.json.
	doc routeDoc
}

// New checks the config and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	if cfg.Controller == nil {
		return nil, errors.New("api: Config.Controller is required")
	}
	s := &Server{
		store: cfg.Store,
		ctrl:  cfg.Controller,
		clock: cfg.Clock,
		log:   cfg.Logger,
		ready: cfg.Ready,
		cache: newHotCache(cfg.Store),
	}
	if s.clock == nil {
		s.clock = standby.SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry != nil {
		s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "standby_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "code"})
		s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "standby_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"})
		if err := cfg.Registry.Register(s.requests); err != nil {
			return nil, err
		}
		if err := cfg.Registry.Register(s.duration); err != nil {
			return nil, err
		}
	}
	s.routes = s.routeTable()
	if cfg.Registry != nil {
		metrics := promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})
		s.routes = append(s.routes, route{
			method: "GET", pattern: "/metrics", access: public,
			summary: "Prometheus metrics",
			handler: func(w http.ResponseWriter, r *http.Request, _ *caller) error {
				metrics.ServeHTTP(w, r)
				return nil
			},
			doc: routeDoc{status: 200, text: true},
		})
	}
	s.mux = http.NewServeMux()
	for i := range s.routes {
		rt := &s.routes[i]
		s.mux.Handle(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, standby.Errorf(standby.ENotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.mux }

// Run deletes idempotency records older than 24 hours every hour until ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		s.cleanupIdempotency(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// idempotencyTTL is how long an Idempotency-Key is remembered (SPEC: ≥ 24 h).
const idempotencyTTL = 24 * time.Hour

func (s *Server) cleanupIdempotency(ctx context.Context) {
	n, err := s.store.DeleteIdempotencyKeys(ctx, s.clock.Now().Add(-idempotencyTTL))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("delete idempotency keys", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Debug("deleted idempotency keys", "count", n)
	}
}

// wrap turns a route into an http.Handler: metrics, auth, role check,
// idempotency, then the handler, with errors written as the envelope.
func (s *Server) wrap(rt *route) http.Handler {
	label := rt.method + " " + rt.pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		defer func() {
			if s.requests != nil {
				s.requests.WithLabelValues(label, strconv.Itoa(rec.statusCode())).Inc()
				s.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
			}
		}()
		var c *caller
		if rt.access != public {
			var err error
			if c, err = s.authenticate(r, rt.access); err != nil {
				s.writeError(rec, r, err)
				return
			}
		}
		if r.Method == http.MethodPost && c != nil && r.Header.Get("Idempotency-Key") != "" {
			s.idempotent(rec, r, c, rt.handler)
			return
		}
		if err := rt.handler(rec, r, c); err != nil {
			if rec.wrote {
				// Too late for an envelope (a streaming response).
				s.log.Warn("error after response started", "route", label, "err", err)
				return
			}
			s.writeError(rec, r, err)
		}
	})
}

// statusWriter remembers the status for metrics and whether anything was
// written; Unwrap lets http.ResponseController reach Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// health serves /healthz: the process is up.
func (s *Server) health(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz serves /readyz: the process can take traffic.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			// The cause may name internals; log it, show a generic reason.
			s.log.Warn("not ready", "err", err)
			return standby.Errorf(standby.EUnavailable, "not ready")
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// pathParamNames lists the {name} wildcards of a pattern, in order.
func pathParamNames(pattern string) []string {
	var names []string
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return names
		}
		j := strings.IndexByte(pattern[i:], '}')
		if j < 0 {
			return names
		}
		names = append(names, strings.TrimSuffix(pattern[i+1:i+j], "..."))
		pattern = pattern[i+j+1:]
	}
}
