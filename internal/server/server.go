package server

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Registrar is a component that mounts its routes (admin API, OAuth
// endpoints, hosted pages).
type Registrar interface {
	Register(mux *http.ServeMux)
}

// Server holds what the HTTP surface is built from.
type Server struct {
	Logger *slog.Logger
	Store  store.Store
	Routes []Registrar
	Static fs.FS
	// TrustedProxies: requests from these networks may name the client in
	// ClientIPHeader ("": X-Forwarded-For).
	TrustedProxies []*net.IPNet
	ClientIPHeader string
	// AdminOnly guards operator endpoints (pprof); nil disables them.
	AdminOnly func(http.Handler) http.Handler
	Pprof     bool
	Metrics   *Metrics
	// HSTS sends Strict-Transport-Security on every response (the issuer
	// is https).
	HSTS bool
	// RequestTimeout is every request's deadline (0: none); MaxInFlight
	// bounds the requests served at once (0: no bound). See bounded.
	RequestTimeout time.Duration
	MaxInFlight    int
}

// Handler returns the complete HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.Routes {
		r.Register(mux)
	}
	mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, "alive")
	})
	mux.HandleFunc("GET /health/ready", s.ready)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Static != nil {
		mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(s.Static)))
	}
	if s.Pprof && s.AdminOnly != nil {
		pp := http.NewServeMux()
		pp.HandleFunc("/debug/pprof/", pprof.Index)
		pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", s.AdminOnly(pp))
	}
	h := withRoute(mux)
	h = s.bounded(h)
	h = securityHeaders(h, s.HSTS)
	h = s.accessLog(h)
	h = s.recoverPanics(h)
	h = s.requestContext(h)
	return h
}

// ready answers whether this process can serve: the database must accept
// a write (a probe row rewritten and committed), not only answer a ping, so
// a full or read-only disk takes the process out of rotation.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.Store.CheckWrites(ctx); err != nil {
		s.Logger.WarnContext(ctx, "readiness check failed", "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(store.RetryAfter.Seconds())))
		writeHealth(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	writeHealth(w, http.StatusOK, "ready")
}

// readyTimeout bounds the readiness probe: a database that takes longer to
// commit one row is not ready to serve.
const readyTimeout = 2 * time.Second

func writeHealth(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"status\":%q}\n", status)
}

// staticHandler serves embedded assets with a day of caching; they are
// versioned with the binary.
func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}
