package echo

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler("inst_x"))
	t.Cleanup(srv.Close)

	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		header      map[string]string
		wantStatus  int
		wantText    string
		wantRequest *Request
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200, wantText: "ok"},
		{
			name: "get with query", method: "GET", path: "/a/b?x=1&x=2&y=", header: map[string]string{"X-Test": "v"},
			wantStatus:  200,
			wantRequest: &Request{Method: "GET", Path: "/a/b", Query: map[string][]string{"x": {"1", "2"}, "y": {""}}, InstanceID: "inst_x"},
		},
		{
			name: "post body", method: "POST", path: "/submit", body: `{"k":"v"}`,
			wantStatus:  200,
			wantRequest: &Request{Method: "POST", Path: "/submit", Query: map[string][]string{}, Body: `{"k":"v"}`, InstanceID: "inst_x"},
		},
		{
			name: "post to healthz is echoed", method: "POST", path: "/healthz",
			wantStatus:  200,
			wantRequest: &Request{Method: "POST", Path: "/healthz", Query: map[string][]string{}, InstanceID: "inst_x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, body %s", resp.StatusCode, body)
			}
			if tt.wantRequest == nil {
				if string(body) != tt.wantText {
					t.Errorf("body %q, want %q", body, tt.wantText)
				}
				return
			}
			var got Request
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			want := *tt.wantRequest
			if got.Method != want.Method || got.Path != want.Path || got.Body != want.Body || got.InstanceID != want.InstanceID {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if len(got.Query) != len(want.Query) {
				t.Errorf("query %v, want %v", got.Query, want.Query)
			}
			for k, v := range want.Query {
				if strings.Join(got.Query[k], ",") != strings.Join(v, ",") {
					t.Errorf("query %s = %v, want %v", k, got.Query[k], v)
				}
			}
			for k, v := range tt.header {
				if got.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
				}
			}
			if got.Headers["Host"] == "" {
				t.Error("Host header missing")
			}
		})
	}
}

func TestServeStopsWithCtx(t *testing.T) {
	t.Setenv("STANDBY_INSTANCE_ID", "inst_env")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr) }()
	deadline := time.Now().Add(10 * time.Second)
	var resp *http.Response
	for {
		resp, err = http.Get("http://" + addr + "/who")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var got Request
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.InstanceID != "inst_env" {
		t.Errorf("got %+v, %v", got, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Error("server still answers after Serve returned")
	}
}

func TestServeBadAddr(t *testing.T) {
	t.Parallel()
	if err := Serve(context.Background(), "127.0.0.1:notaport"); err == nil {
		t.Error("want error")
	}
}

func TestIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Idle(ctx) }()
	select {
	case <-done:
		t.Fatal("Idle returned before ctx ended")
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Idle: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Idle did not return")
	}
}
