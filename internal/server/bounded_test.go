package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTheRequestBound covers the middleware's own answers, with handlers
// that stand for a stalled database.
func TestTheRequestBound(t *testing.T) {
	s := &Server{Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(), RequestTimeout: 100 * time.Millisecond, MaxInFlight: 1}
	gaveUp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	answered := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Deadline(); ok {
			io.WriteString(w, "with a deadline")
			return
		}
		io.WriteString(w, "without a deadline")
	})
	tests := []struct {
		name, path, accept string
		h                  http.Handler
		status             int
		contentType, body  string
	}{
		{"a handler that gives up at the deadline without answering gets 503 with Retry-After", "/auth/token", "",
			gaveUp, http.StatusServiceUnavailable, "application/json", `{"error":"temporarily_unavailable","error_description":"The request took too long. Try again after Retry-After seconds."}` + "\n"},
		{"a browser gets the same answer as a page", "/auth/login", "text/html,*/*",
			gaveUp, http.StatusServiceUnavailable, "text/html; charset=utf-8", ""},
		{"a request's context carries the deadline", "/auth/token", "",
			answered, http.StatusOK, "", "with a deadline"},
		{"health checks have no deadline of the middleware's", "/health/ready", "",
			answered, http.StatusOK, "", "without a deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := httptest.NewRecorder()
			s.bounded(tt.h).ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "2" {
				t.Errorf("Retry-After %q, want 2", rec.Header().Get("Retry-After"))
			}
			if tt.contentType != "" && rec.Header().Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.contentType)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body %q, want %q", rec.Body, tt.body)
			}
		})
	}
	t.Run("a request past the in-flight bound is shed while health still answers", func(t *testing.T) {
		release := make(chan struct{})
		entered := make(chan struct{})
		h := s.bounded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/auth/token" {
				close(entered)
				<-release
			}
		}))
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/auth/token", nil))
		}()
		<-entered
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/userinfo", nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" {
			t.Errorf("past the bound: %d (Retry-After %q), want 503 with Retry-After 2", rec.Code, rec.Header().Get("Retry-After"))
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/alive", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("health while the bound is full: %d", rec.Code)
		}
		close(release)
		<-done
		if got := testutil.ToFloat64(s.Metrics.shed); got != 1 {
			t.Errorf("shed counter %v, want 1", got)
		}
	})
}
