package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// requestContext gives every request an id (echoed as X-Request-ID) and
// resolves the client address, trusting ClientIPHeader only from
// configured proxies.
func (s *Server) requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			id = secret.RandomToken(8)
		}
		w.Header().Set("X-Request-ID", id)
		ctx := audit.WithRequest(r.Context(), id, s.clientAddr(r))
		// E-mails sent while serving the request speak the browser's language.
		if al := r.Header.Get("Accept-Language"); al != "" && len(al) <= 256 {
			ctx = notify.WithLanguage(ctx, al)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validRequestID accepts a caller's id only if it is short and plain, so it
// cannot inject into logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer := net.ParseIP(host)
	if peer == nil || !s.trusted(peer) {
		return host
	}
	// Walk the header from the right, skipping our own proxies (a header
	// of one address, such as X-Real-IP, is a list of one).
	header := s.ClientIPHeader
	if header == "" {
		header = "X-Forwarded-For"
	}
	hops := strings.Split(r.Header.Get(header), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip := net.ParseIP(strings.TrimSpace(hops[i]))
		if ip == nil {
			break
		}
		if !s.trusted(ip) {
			return ip.String()
		}
	}
	return host
}

func (s *Server) trusted(ip net.IP) bool {
	for _, n := range s.TrustedProxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeSlot receives the ServeMux pattern that served a request (for the
// metrics' route label; the pattern never holds ids or tokens).
type routeSlot struct{ pattern string }

type routeKey struct{}

// withRoute tells the accessLog which pattern of mux served the request:
// ServeMux sets it on the request it is given.
func withRoute(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if slot, ok := r.Context().Value(routeKey{}).(*routeSlot); ok {
			slot.pattern = r.Pattern
		}
	})
}

// accessLog logs one line per request. It logs the path only: query strings
// carry codes, states and tokens.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		route := &routeSlot{}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, route)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		if s.Metrics != nil {
			s.Metrics.observe(route.pattern, sw.status, time.Since(start))
		}
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		if r.URL.Path == "/health/alive" || r.URL.Path == "/health/ready" || r.URL.Path == "/metrics" {
			level = slog.LevelDebug
		}
		s.Logger.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Int("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", audit.RequestID(r.Context())),
			slog.String("remote", audit.RemoteAddr(r.Context())),
		)
	})
}

// recoverPanics turns a panic into a logged 500 with a plain body, never a
// stack trace for the client.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(r.Context(), "panic serving request", "path", r.URL.Path, "panic", v, "request_id", audit.RequestID(r.Context()))
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte("Internal error. The request id is " + audit.RequestID(r.Context()) + ".\n"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the defaults every response carries. Handlers may
// override them (the hosted pages set a stricter CSP with the theme's origin;
// discovery documents allow caching). With hsts (an https issuer) browsers
// are told to use https only, for a year.
func securityHeaders(next http.Handler, hsts bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if hsts {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// unbounded are the paths outside the request deadline and the in-flight
// bound: health and metrics must answer while the server sheds load (they
// have bounds of their own), and a CPU profile runs for as long as asked.
func unbounded(path string) bool {
	return strings.HasPrefix(path, "/health/") || path == "/metrics" || strings.HasPrefix(path, "/debug/pprof/")
}

// bounded gives every request its deadline (RequestTimeout), which reaches
// the database through the request's context: waiting for a pooled
// connection, the SQLite writer queue and each statement end with it, and
// every surface answers the resulting store.ErrUnavailable with 503 and
// Retry-After. Past MaxInFlight requests at once, more are shed at once
// with the same answer, instead of piling up behind a stalled database.
func (s *Server) bounded(next http.Handler) http.Handler {
	var slots chan struct{}
	if s.MaxInFlight > 0 {
		slots = make(chan struct{}, s.MaxInFlight)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unbounded(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if slots != nil {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				if s.Metrics != nil {
					s.Metrics.inFlight.Add(1)
					defer s.Metrics.inFlight.Add(-1)
				}
			default:
				if s.Metrics != nil {
					s.Metrics.shed.Inc()
				}
				s.Logger.WarnContext(r.Context(), "request shed: too many in flight", "limit", s.MaxInFlight,
					"path", r.URL.Path, "request_id", audit.RequestID(r.Context()))
				writeBusy(w, r, "The server is busy. Try again after Retry-After seconds.")
				return
			}
		}
		if s.RequestTimeout <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.RequestTimeout)
		defer cancel()
		ww := &wroteWriter{ResponseWriter: w}
		next.ServeHTTP(ww, r.WithContext(ctx))
		if !ww.wrote && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// A handler that gave up at the deadline without answering.
			writeBusy(w, r, "The request took too long. Try again after Retry-After seconds.")
		}
	})
}

// writeBusy is the middleware's own 503: JSON, or a short page for a
// browser.
func writeBusy(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(store.RetryAfter.Seconds())))
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "<!doctype html><title>Temporarily unavailable</title><p id=\"error\">%s</p>\n", html.EscapeString(msg))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	b, _ := json.Marshal(map[string]string{"error": "temporarily_unavailable", "error_description": msg})
	w.Write(append(b, '\n'))
}

// wroteWriter notes whether the handler answered at all.
type wroteWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *wroteWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *wroteWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *wroteWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
