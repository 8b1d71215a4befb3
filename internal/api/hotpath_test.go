package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/store/sqlite"
)

// hotPathServer is the api over a real SQLite store (synchronous=FULL)
// behind a real loopback listener, with a developer key and a require pool.
type hotPathServer struct {
	store  *sqlite.Store
	url    string
	key    string
	pool   *standby.WarmPool
	client *http.Client
}

func newHotPathServer(b *testing.B) *hotPathServer {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := New(Config{Store: st, Controller: newTestController(st), Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	now := standby.Now()
	p := &standby.Project{Name: "bench"}
	if err := standby.CreateProjectWithBuiltins(ctx, st, p, now); err != nil {
		b.Fatal(err)
	}
	secret := standby.NewKeySecret()
	k := &standby.APIKey{ID: standby.NewID(standby.PrefixAPIKey), ProjectID: p.ID, Name: "dev", Role: standby.RoleDeveloper,
		Hash: standby.HashKey(secret), Prefix: secret[:8], CreatedAt: now}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		b.Fatal(err)
	}
	build, err := standby.ResolveTemplateRef(ctx, st, p.ID, "echo")
	if err != nil {
		b.Fatal(err)
	}
	pool := &standby.WarmPool{ID: standby.NewID(standby.PrefixWarmPool), ProjectID: p.ID, Name: "echo", TemplateRef: "echo",
		MinReady: 1, MaxReady: 1, CheckoutPolicy: standby.ModeRequire, CreatedAt: now, UpdatedAt: now}
	pool.ApplyDefaults()
	pool.SetResolvedBuild(build)
	if err := st.CreateWarmPool(ctx, pool); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}
	b.Cleanup(tr.CloseIdleConnections)
	return &hotPathServer{store: st, url: hs.URL, key: secret, pool: pool, client: &http.Client{Transport: tr}}
}

// fill stores n ready instances in the pool, from 32 goroutines so that
// the writes share commits.
func (h *hotPathServer) fill(b *testing.B, n int) {
	b.Helper()
	now := standby.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				r := now.Add(time.Duration(i) * time.Microsecond)
				inst := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: h.pool.ProjectID, PoolID: h.pool.ID,
					State: standby.InstanceReady, TemplateBuildID: *h.pool.ResolvedTemplateBuildID, HostID: "host_test", Address: "127.0.0.1",
					Ports: map[string]int{"http": 40000 + i%20000}, Labels: map[string]string{}, Annotations: map[string]string{},
					RolloutGeneration: h.pool.RolloutGeneration, CreatedAt: now, ReadyAt: &r}
				if err := h.store.CreateInstance(context.Background(), inst); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// call sends one request and fails unless it gets want.
func (h *hotPathServer) call(b *testing.B, method, path string, body []byte, want int) bool {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		b.Error(err)
		return false
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := h.client.Do(req)
	if err != nil {
		b.Error(err)
		return false
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		b.Errorf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, got)
		return false
	}
	return true
}

// BenchmarkHotPathHTTP measures, side by side over loopback HTTP on one
// server, an authenticated no-op (GET /v1/whoami, the floor) and a
// require checkout (POST /v1/sandboxes, durable before its 201), one
// request at a time (c1) and 32 in flight (c32). It reports p50/p99 in µs
// and requests per second; the pool holds one ready instance per checkout.
func BenchmarkHotPathHTTP(b *testing.B) {
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		status      int
		parallelism int // goroutines per GOMAXPROCS; 0: one goroutine
		checkout    bool
	}{
		{"noop/c1", "GET", "/v1/whoami", http.StatusOK, 0, false},
		{"checkout/c1", "POST", "/v1/sandboxes", http.StatusCreated, 0, true},
		{"noop/c32", "GET", "/v1/whoami", http.StatusOK, 16, false},
		{"checkout/c32", "POST", "/v1/sandboxes", http.StatusCreated, 16, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHotPathServer(b)
			var body []byte
			if tc.checkout {
				h.fill(b, b.N)
				body = fmt.Appendf(nil, `{"warm_pool":{"mode":"require","id":%q}}`, h.pool.ID)
			}
			var mu sync.Mutex
			var lat []time.Duration
			one := func(own *[]time.Duration) bool {
				t0 := time.Now()
				ok := h.call(b, tc.method, tc.path, body, tc.status)
				*own = append(*own, time.Since(t0))
				return ok
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if tc.parallelism == 0 {
				for range b.N {
					if !one(&lat) {
						return
					}
				}
			} else {
				b.SetParallelism(tc.parallelism)
				b.RunParallel(func(pb *testing.PB) {
					var own []time.Duration
					for pb.Next() {
						if !one(&own) {
							return
						}
					}
					mu.Lock()
					lat = append(lat, own...)
					mu.Unlock()
				})
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "rps")
		})
	}
}
