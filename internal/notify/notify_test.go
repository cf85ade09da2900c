package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const token = "918273"

// received is one request a test receiver saw.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a local webhook endpoint answering with the statuses in order
// (the last one repeats).
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	reqs     []received
	statuses []int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, received{header: req.Header.Clone(), body: body})
		status := http.StatusNoContent
		if len(r.statuses) > 0 {
			status = r.statuses[min(len(r.reqs)-1, len(r.statuses)-1)]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	n    *notify.Notifier
	st   store.Store
	logs *syncBuffer
}

// newNotifier returns a notifier for a receiver on 127.0.0.1 (AllowPrivate),
// with fast backoff, an audit recorder on a real store and captured logs.
func newNotifier(t *testing.T) *fixture {
	t.Helper()
	st := gormstoretest.Open(t)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := &notify.Notifier{
		Logger:       logger,
		Audit:        &audit.Recorder{Store: st, Logger: logger, Now: time.Now},
		Now:          time.Now,
		AllowPrivate: true,
		Backoff:      10 * time.Millisecond,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return &fixture{n: n, st: st, logs: logs}
}

func (f *fixture) failures(t *testing.T) []store.AuditEvent {
	t.Helper()
	evs, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Type: "webhook.failure"}, store.Page{Count: 100, Page: 1})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// drain waits for background retries to finish.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.n.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func event() notify.CodeEvent {
	return notify.CodeEvent{
		ID:          "ev-1",
		User:        notify.User{ID: "alice", Email: "alice@example.com", PhoneNumber: "+15551234567"},
		Token:       token,
		Channel:     "sms",
		Destination: "+15551234567",
		ExpiresAt:   time.Date(2027, 1, 15, 8, 10, 0, 0, time.UTC),
	}
}

func TestSendPayloadHeadersAndSignature(t *testing.T) {
	f := newNotifier(t)
	r := newReceiver(t)
	hook := notify.Webhook{
		Endpoint:  r.srv.URL + "/hook?key=abc",
		TimeoutMS: 2000,
		Headers:   map[string]string{"Authorization": "Bearer gateway-key", "X-Tenant": "acme", "Content-Type": "text/plain"},
		Secret:    "whsec",
	}
	before := time.Now().Unix()
	if err := f.n.Send(context.Background(), hook, event()); err != nil {
		t.Fatalf("send: %v", err)
	}
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	req := reqs[0]

	t.Run("the body is the documented JSON payload", func(t *testing.T) {
		var got map[string]any
		if err := json.Unmarshal(req.body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"event": "two_factor.code",
			"user":  map[string]any{"id": "alice", "email": "alice@example.com", "phoneNumber": "+15551234567"},
			"token": token, "channel": "sms", "destination": "+15551234567",
			"expiresAt": "2027-01-15T08:10:00Z", "id": "ev-1",
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Fatalf("payload\n got %s\nwant %s", gotJSON, wantJSON)
		}
	})
	t.Run("configured headers are sent and the content type is JSON", func(t *testing.T) {
		if req.header.Get("Authorization") != "Bearer gateway-key" || req.header.Get("X-Tenant") != "acme" {
			t.Fatalf("headers %v", req.header)
		}
		if req.header.Get("Content-Type") != "application/json" {
			t.Fatalf("content type %q", req.header.Get("Content-Type"))
		}
	})
	t.Run("the signature is an HMAC-SHA256 of t.body that a receiver can check", func(t *testing.T) {
		sig := req.header.Get("Gatehouse-Signature")
		ts, mac, ok := strings.Cut(sig, ",v1=")
		if !ok || !strings.HasPrefix(ts, "t=") {
			t.Fatalf("signature header %q", sig)
		}
		unix, err := strconv.ParseInt(strings.TrimPrefix(ts, "t="), 10, 64)
		if err != nil || unix < before || unix > time.Now().Unix() {
			t.Fatalf("timestamp %q", ts)
		}
		m := hmac.New(sha256.New, []byte("whsec"))
		m.Write([]byte(strconv.FormatInt(unix, 10) + "." + string(req.body)))
		if want := hex.EncodeToString(m.Sum(nil)); mac != want {
			t.Fatalf("v1=%s, want %s", mac, want)
		}
		if err := notify.VerifySignature("whsec", sig, req.body, time.Now(), time.Minute); err != nil {
			t.Fatalf("VerifySignature: %v", err)
		}
		if err := notify.VerifySignature("other", sig, req.body, time.Now(), time.Minute); !errors.Is(err, notify.ErrBadSignature) {
			t.Fatalf("wrong key: %v", err)
		}
		tampered := bytes.Replace(req.body, []byte(token), []byte("000000"), 1)
		if err := notify.VerifySignature("whsec", sig, tampered, time.Now(), time.Minute); !errors.Is(err, notify.ErrBadSignature) {
			t.Fatalf("tampered body: %v", err)
		}
		if err := notify.VerifySignature("whsec", sig, req.body, time.Now().Add(time.Hour), time.Minute); !errors.Is(err, notify.ErrBadSignature) {
			t.Fatalf("stale signature: %v", err)
		}
	})
	t.Run("without a secret no signature is sent", func(t *testing.T) {
		r2 := newReceiver(t)
		if err := f.n.Send(context.Background(), notify.Webhook{Endpoint: r2.srv.URL}, event()); err != nil {
			t.Fatal(err)
		}
		if h := r2.requests()[0].header.Get("Gatehouse-Signature"); h != "" {
			t.Fatalf("signature %q without a secret", h)
		}
	})
	t.Run("an event without an id gets one", func(t *testing.T) {
		r3 := newReceiver(t)
		ev := event()
		ev.ID = ""
		if err := f.n.Send(context.Background(), notify.Webhook{Endpoint: r3.srv.URL}, ev); err != nil {
			t.Fatal(err)
		}
		var got struct{ ID string }
		_ = json.Unmarshal(r3.requests()[0].body, &got)
		if len(got.ID) < 16 {
			t.Fatalf("event id %q", got.ID)
		}
	})
}

func TestSlowReceiverIsCutOffAtTheTimeout(t *testing.T) {
	f := newNotifier(t)
	f.n.Retries = -1
	cancelled := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a client that went away only once the body is read.
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	done := make(chan error, 1)
	go func() {
		done <- f.n.Send(context.Background(), notify.Webhook{Endpoint: srv.URL, TimeoutMS: 100}, event())
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send still blocked long after a 100 ms timeout")
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver's request was never cancelled")
	}
}

func TestRetries(t *testing.T) {
	t.Run("a 500 is retried in the background until it succeeds", func(t *testing.T) {
		f := newNotifier(t)
		r := newReceiver(t, 500, 503, 200)
		err := f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL, Secret: "k"}, event())
		if !errors.Is(err, notify.ErrStatus) {
			t.Fatalf("first attempt: %v, want ErrStatus", err)
		}
		f.drain(t)
		reqs := r.requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests, want 3", len(reqs))
		}
		for _, req := range reqs {
			if !bytes.Equal(req.body, reqs[0].body) {
				t.Fatal("a retry changed the payload")
			}
			if err := notify.VerifySignature("k", req.header.Get("Gatehouse-Signature"), req.body, time.Now(), time.Minute); err != nil {
				t.Fatalf("retry signature: %v", err)
			}
		}
		evs := f.failures(t)
		if len(evs) != 2 || evs[0].UserID != "alice" || evs[0].Detail["event_id"] != "ev-1" {
			t.Fatalf("webhook.failure events %+v", evs)
		}
	})
	t.Run("retries stop after the configured number", func(t *testing.T) {
		f := newNotifier(t)
		f.n.Retries = 2
		r := newReceiver(t, 502)
		_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event())
		f.drain(t)
		if n := len(r.requests()); n != 3 {
			t.Fatalf("%d requests, want 1 + 2 retries", n)
		}
		evs := f.failures(t)
		if len(evs) != 3 || evs[0].Detail["will_retry"] != "false" {
			t.Fatalf("failure events %+v", evs)
		}
	})
	t.Run("a 400 is not retried", func(t *testing.T) {
		f := newNotifier(t)
		r := newReceiver(t, 400)
		if err := f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event()); !errors.Is(err, notify.ErrStatus) {
			t.Fatalf("send: %v", err)
		}
		f.drain(t)
		if n := len(r.requests()); n != 1 {
			t.Fatalf("%d requests", n)
		}
	})
	t.Run("Close gives up on waiting retries at its deadline", func(t *testing.T) {
		f := newNotifier(t)
		f.n.Backoff = time.Hour
		r := newReceiver(t, 500)
		_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := f.n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("close: %v, want the deadline", err)
		}
		if n := len(r.requests()); n != 1 {
			t.Fatalf("%d requests", n)
		}
		if err := f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event()); !errors.Is(err, notify.ErrStatus) {
			t.Fatalf("send after close: %v", err)
		}
	})
	t.Run("at most MaxInFlight deliveries retry at once", func(t *testing.T) {
		f := newNotifier(t)
		f.n.MaxInFlight = 1
		f.n.Backoff = 200 * time.Millisecond
		f.n.Retries = 1
		r := newReceiver(t, 500)
		_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event())
		_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL}, event())
		f.drain(t)
		if n := len(r.requests()); n != 3 {
			t.Fatalf("%d requests, want 2 first attempts and 1 retry", n)
		}
		if !strings.Contains(f.logs.String(), "retry queue full") {
			t.Fatal("the dropped retry was not logged")
		}
	})
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	f := newNotifier(t)
	var target atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { target.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	err := f.n.Send(context.Background(), notify.Webhook{Endpoint: srv.URL + "/hook"}, event())
	var se *notify.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTemporaryRedirect {
		t.Fatalf("send: %v, want a 307 status error", err)
	}
	f.drain(t)
	if target.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestPrivateAddressesAreRefused(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	tests := []struct{ name, endpoint string }{
		{"a loopback IP is refused at dial time", srv.URL},
		{"a name resolving to loopback is refused at dial time", "https://localhost:" + port},
		{"an IPv6 loopback is refused", "https://[::1]:" + port},
		{"an IPv4-mapped loopback is refused", "https://[::ffff:127.0.0.1]:" + port},
		{"plain http is refused", "http://127.0.0.1:" + port},
		{"another scheme is refused", "ftp://127.0.0.1:" + port},
		{"credentials in the URL are refused", "https://user:pw@example.com/hook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newNotifier(t)
			f.n.AllowPrivate = false
			err := f.n.Send(context.Background(), notify.Webhook{Endpoint: tt.endpoint, TimeoutMS: 2000}, event())
			if !errors.Is(err, notify.ErrRefused) {
				t.Fatalf("send: %v, want ErrRefused", err)
			}
			f.drain(t)
			if evs := f.failures(t); len(evs) != 1 || evs[0].Detail["will_retry"] != "false" {
				t.Fatalf("failure events %+v", evs)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("the private receiver was reached %d times", hits.Load())
	}
}

func TestTokenNeverLogged(t *testing.T) {
	f := newNotifier(t)
	r := newReceiver(t, 500, 500, 500, 500)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		<-r.Context().Done()
	}))
	defer slow.Close()
	_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: r.srv.URL + "/?q=" + token, Secret: "s"}, event())
	_ = f.n.Send(context.Background(), notify.Webhook{Endpoint: slow.URL, TimeoutMS: 50}, event())
	f.drain(t)
	logs := f.logs.String()
	if !strings.Contains(logs, "ev-1") || !strings.Contains(logs, "webhook delivery failed") {
		t.Fatalf("expected failure logs, got %s", logs)
	}
	if strings.Contains(logs, token) {
		t.Fatalf("the token appears in the logs:\n%s", logs)
	}
}

func TestIsPublicIP(t *testing.T) {
	tests := []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true},
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"100.127.255.254", false},
		{"0.0.0.0", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"192.0.2.10", false},
		{"198.18.0.1", false},
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"64:ff9b::7f00:1", false},
		{"2002:7f00:1::", false},
		{"2002:a00:1::", false},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		name := tt.ip + " is not public"
		if tt.public {
			name = tt.ip + " is public"
		}
		t.Run(name, func(t *testing.T) {
			ip := net.ParseIP(tt.ip)
			if ip == nil {
				t.Fatalf("bad test ip %q", tt.ip)
			}
			if got := notify.IsPublicIP(ip); got != tt.public {
				t.Fatalf("IsPublicIP(%s) = %v", tt.ip, got)
			}
		})
	}
	if notify.IsPublicIP(nil) {
		t.Fatal("a nil IP is public")
	}
}

func TestValidateEndpoint(t *testing.T) {
	tests := []struct {
		name, url    string
		allowPrivate bool
		ok           bool
	}{
		{"a public https URL is accepted", "https://sms.example.com/hook", false, true},
		{"a public IP over https is accepted", "https://8.8.8.8/hook", false, true},
		{"http is refused in production", "http://sms.example.com/hook", false, false},
		{"http is accepted with private addresses allowed", "http://127.0.0.1:9000/hook", true, true},
		{"a loopback literal is refused", "https://127.0.0.1/hook", false, false},
		{"a metadata address is refused", "https://169.254.169.254/latest", false, false},
		{"an IPv4-mapped private literal is refused", "https://[::ffff:10.0.0.1]/", false, false},
		{"localhost is refused", "https://localhost/hook", false, false},
		{"a name under localhost is refused", "https://api.localhost./hook", false, false},
		{"a relative URL is refused", "/hook", false, false},
		{"an empty endpoint is refused", "", false, false},
		{"credentials are refused", "https://a:b@sms.example.com/", false, false},
		{"javascript is refused", "javascript:alert(1)", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.ValidateEndpoint(context.Background(), tt.url, tt.allowPrivate, nil)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateEndpoint(%q) = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && !errors.Is(err, notify.ErrRefused) {
				t.Fatalf("error %v does not match ErrRefused", err)
			}
		})
	}
	t.Run("a name that does not resolve is refused when a resolver is given", func(t *testing.T) {
		err := notify.ValidateEndpoint(context.Background(), "https://localhost6.test.invalid/", false, &net.Resolver{})
		if !errors.Is(err, notify.ErrRefused) {
			t.Fatalf("unresolvable name: %v, want ErrRefused", err)
		}
	})
}
