package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// The checkout request's parts that run on every warm checkout, measured
// alone: decoding and validating the create body, and encoding the
// sandbox that answers it. Run with -benchmem.

// checkoutBody is what `standby bench` sends, plus the fields a typical
// client adds.
var checkoutBody = []byte(`{"template":"echo","warm_pool":{"id":"wp_01JBENCHPOOL0000000000000000","mode":"require","wait_ms":0},` +
	`"timeout_ms":60000,"labels":{"team":"search","env":"ci"},"metadata":{"run":42},"selectors":[{"labels":{"zone":"a"}}]}`)

func BenchmarkDecodeSandboxRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"minimal", []byte(`{"warm_pool":{"id":"wp_01JBENCHPOOL0000000000000000","mode":"require","wait_ms":0}}`)},
		{"typical", checkoutBody},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("POST", "/v1/sandboxes", nil)
			rd := bytes.NewReader(bc.body)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(bc.body)
				r.Body = readCloser{rd}
				in, err := decodeSandbox(r)
				if err != nil || in.WarmPool.ID == "" {
					b.Fatalf("decode: %v", err)
				}
			}
		})
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// discardWriter is a ResponseWriter that keeps nothing, so only the
// encoding is measured.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func BenchmarkEncodeSandbox(b *testing.B) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	sb := &standby.Sandbox{
		ID: standby.NewID(standby.PrefixSandbox), Template: "echo", TemplateBuildID: standby.NewID(standby.PrefixBuild),
		Config: standby.Resources{VCPUs: 1, MemoryMB: 512, DiskMB: 1024}, State: standby.SandboxRunning,
		Address: "127.0.0.1", Ports: map[string]int{"http": 40123}, HostID: standby.NewID(standby.PrefixHost),
		InstanceID: standby.NewID(standby.PrefixInstance), CreatedAt: now, StartedAt: now, TimeoutMS: 300000,
		ExpiresAt: now.Add(5 * time.Minute), Metadata: json.RawMessage(`{"run":42}`),
		Labels: map[string]string{"team": "search", "env": "ci"}, Annotations: map[string]string{},
		WarmPoolCheckout: standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Hit: true, ID: "wp_01JBENCHPOOL0000000000000000", Mode: standby.ModeRequire},
		Version:          1,
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		writeVersioned(w, http.StatusCreated, sb.Version, sb)
	}
}
