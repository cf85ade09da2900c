package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Defaults for a Notifier's zero fields.
const (
	DefaultTimeout     = 5 * time.Second
	MaxTimeout         = 30 * time.Second
	DefaultRetries     = 3
	DefaultBackoff     = time.Second
	DefaultMaxInFlight = 32
	// EventTwoFactorCode is the payload's "event".
	EventTwoFactorCode = "two_factor.code"
	// EventPasswordReset is the event of a forgotten password's code,
	// whose payload also carries the "link" to set a new password.
	EventPasswordReset = "password.reset"
	// EventSignInPaused tells the owner that wrong passwords from one
	// address paused sign-in there: no token; "address" is that address
	// and "expiresAt" the end of the pause.
	EventSignInPaused = "account.sign_in_paused"
	// SignatureHeader carries "t=<unix>,v1=<hex HMAC-SHA256 of "t.body">".
	SignatureHeader = "Gatehouse-Signature"
)

// Errors a delivery can end with. Every error Send returns wraps one of them
// or a transport error.
var (
	// ErrRefused: the endpoint is not allowed (not https, not a public
	// address, a name resolving to an internal host). Not retried.
	ErrRefused = errors.New("webhook endpoint refused")
	// ErrStatus: the receiver answered with a status other than 2xx.
	ErrStatus = errors.New("webhook answered with a non-2xx status")
	// ErrClosed: the notifier is shutting down.
	ErrClosed = errors.New("notifier closed")
)

// Webhook is a delivery target, as configured on an AuthConfig.
type Webhook struct {
	Endpoint  string
	TimeoutMS int               // per attempt; 0 means DefaultTimeout, capped at MaxTimeout
	Headers   map[string]string // sent with every request
	Secret    string            // HMAC key of the signature header; "" sends no signature
	// Mail, when configured, delivers e-mail codes over SMTP instead of
	// the endpoint (see smtp.go); its password may be sealed.
	Mail *SMTP
	// Messages reword the e-mails (the AuthConfig's messages: language →
	// message id → text).
	Messages map[string]map[string]string
}

// User is the account a code is for, as the payload names it (Aidbox's shape).
type User struct {
	ID          string `json:"id"`
	Email       string `json:"email,omitempty"`
	PhoneNumber string `json:"phoneNumber,omitempty"`
}

// CodeEvent is one code to deliver. ID identifies the event across retries so
// a receiver can drop duplicates; it is generated when empty.
type CodeEvent struct {
	Event       string // "" is EventTwoFactorCode
	Link        string // EventPasswordReset only
	Address     string // EventSignInPaused only
	Failures    int    // EventSignInPaused only: the wrong passwords that paused it
	ID          string
	User        User
	Token       string
	Channel     string // totp | sms | email
	Destination string
	ExpiresAt   time.Time
}

type payload struct {
	Event       string `json:"event"`
	User        User   `json:"user"`
	Token       string `json:"token"`
	Channel     string `json:"channel"`
	Destination string `json:"destination"`
	ExpiresAt   string `json:"expiresAt"`
	ID          string `json:"id"`
	Link        string `json:"link,omitempty"`
	Address     string `json:"address,omitempty"`
	Failures    int    `json:"failures,omitempty"`
}

// Notifier posts code events to webhooks. The first attempt of a delivery
// runs inside Send, bounded by the hook's timeout; failures are retried in the
// background with exponential backoff, at most Retries times, with at most
// MaxInFlight retry sequences at once. Close waits for them.
type Notifier struct {
	// Client sends the requests. nil: a client whose dialer refuses
	// non-public addresses unless AllowPrivate. A client given here is used
	// as is apart from redirects, which are never followed.
	Client *http.Client
	Logger *slog.Logger
	Audit  *audit.Recorder // optional: webhook.failure events
	Now    func() time.Time
	// AllowPrivate permits http endpoints and internal addresses (--dev,
	// GATEHOUSE_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	Retries      int           // background retries after a failed first attempt; 0: DefaultRetries, <0: none
	Backoff      time.Duration // delay before the first retry, doubled each time; 0: DefaultBackoff
	MaxInFlight  int           // 0: DefaultMaxInFlight

	once   sync.Once
	client *http.Client
	bg     retrier
}

func (n *Notifier) init() {
	n.once.Do(func() {
		if n.Client == nil {
			n.client = NewClient(n.AllowPrivate)
		} else {
			c := *n.Client
			c.CheckRedirect = noRedirects
			n.client = &c
		}
		n.bg.init(n.MaxInFlight)
	})
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewClient returns the HTTP client webhooks are sent with: no proxy (the
// address check must see the receiver, not a proxy), no redirects, and unless
// allowPrivate a dialer that refuses every non-public address at connect time,
// after DNS resolution, so a name that later resolves to an internal host is
// still refused.
func NewClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = refuseNonPublic
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          50,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			ResponseHeaderTimeout: MaxTimeout,
		},
		CheckRedirect: noRedirects,
	}
}

// refuseNonPublic runs after resolution with the literal address about to be
// dialled.
func refuseNonPublic(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial %s: %v", ErrRefused, address, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: dial %s: not an IP address", ErrRefused, address)
	}
	if !IsPublicAddr(addr) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, addr)
	}
	return nil
}

// ValidateEndpoint checks a webhook URL when it is saved: it must be absolute
// http(s) without credentials, https unless allowPrivate, and unless
// allowPrivate neither name a literal internal address nor "localhost".
// With a resolver it also requires every address the name resolves to now to
// be public; the dial-time check stays the real guard against DNS changes.
func ValidateEndpoint(ctx context.Context, raw string, allowPrivate bool, resolver *net.Resolver) error {
	u, err := parseEndpoint(raw, allowPrivate)
	if err != nil {
		return err
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if !IsPublicAddr(addr) {
			return fmt.Errorf("%w: %s is not a public address", ErrRefused, addr)
		}
		return nil
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return fmt.Errorf("%w: %s is the local host", ErrRefused, host)
	}
	if resolver == nil {
		return nil
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("%w: resolve %s: %v", ErrRefused, host, err)
	}
	for _, a := range addrs {
		if !IsPublicAddr(a) {
			return fmt.Errorf("%w: %s resolves to %s, not a public address", ErrRefused, host, a)
		}
	}
	return nil
}

func parseEndpoint(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not a URL", ErrRefused)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	case u.Scheme == "http":
		return nil, fmt.Errorf("%w: https is required", ErrRefused)
	default:
		return nil, fmt.Errorf("%w: scheme must be https", ErrRefused)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: no host", ErrRefused)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not allowed; use headers", ErrRefused)
	}
	return u, nil
}

// Sign returns the signature header value for body sent at unix time t.
func Sign(key string, t int64, body []byte) string {
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + signature(key, t, body)
}

func signature(key string, t int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(strconv.FormatInt(t, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature: a signature header that is malformed, stale or wrong.
var ErrBadSignature = errors.New("webhook signature does not verify")

// VerifySignature checks a Gatehouse-Signature header the way a receiver
// should: the HMAC over "t.body" and a timestamp within tolerance of now.
func VerifySignature(key, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadSignature
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return ErrBadSignature
	}
	want := signature(key, t, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

func (n *Notifier) logger() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (h Webhook) timeout() time.Duration {
	if h.TimeoutMS <= 0 {
		return DefaultTimeout
	}
	return min(time.Duration(h.TimeoutMS)*time.Millisecond, MaxTimeout)
}

// Send delivers ev to hook. The first attempt happens now and takes at most
// the hook's timeout (less if ctx ends sooner); its error is returned, and a
// retryable failure is retried in the background, detached from ctx. Callers
// on a login path log the error and carry on: the code can be sent again.
func (n *Notifier) Send(ctx context.Context, hook Webhook, ev CodeEvent) error {
	n.init()
	if ev.ID == "" {
		ev.ID = secret.RandomToken(16)
	}
	u, err := parseEndpoint(hook.Endpoint, n.AllowPrivate)
	if err != nil {
		n.failed(ctx, hook, ev, 1, err, false)
		return err
	}
	event := ev.Event
	if event == "" {
		event = EventTwoFactorCode
	}
	body, err := json.Marshal(payload{
		Event:       event,
		User:        ev.User,
		Token:       ev.Token,
		Channel:     ev.Channel,
		Destination: ev.Destination,
		ExpiresAt:   ev.ExpiresAt.UTC().Format(time.RFC3339),
		ID:          ev.ID,
		Link:        ev.Link,
		Address:     ev.Address,
		Failures:    ev.Failures,
	})
	if err != nil {
		return fmt.Errorf("encode webhook payload: %w", err)
	}
	err = n.attempt(ctx, u, hook, body)
	if err == nil {
		return nil
	}
	retry := false
	if retryable(err) {
		retry = n.startRetries(ctx, u, hook, ev, body)
	}
	n.failed(ctx, hook, ev, 1, err, retry)
	return err
}

// startRetries schedules the background retries; false when there are
// none to run (closed, no retries configured, or the queue is full).
func (n *Notifier) startRetries(ctx context.Context, u *url.URL, hook Webhook, ev CodeEvent, body []byte) bool {
	started, full := n.bg.start(ctx, retryPlan{
		retries:   retryCount(n.Retries),
		backoff:   n.Backoff,
		attempt:   func(ctx context.Context) error { return n.attempt(ctx, u, hook, body) },
		retryable: retryable,
		failed: func(ctx context.Context, attempt int, err error, more bool) {
			n.failed(ctx, hook, ev, attempt, err, more)
		},
		delivered: func(ctx context.Context, attempt int) {
			n.logger().InfoContext(ctx, "webhook delivered after retry",
				"event_id", ev.ID, "user", ev.User.ID, "endpoint", redact(u), "attempt", attempt)
		},
	})
	if full {
		n.logger().WarnContext(ctx, "webhook retry queue full; not retrying",
			"event_id", ev.ID, "user", ev.User.ID, "endpoint", redact(u))
	}
	return started
}

// attempt makes one POST within the hook's timeout.
func (n *Notifier) attempt(ctx context.Context, u *url.URL, hook Webhook, body []byte) error {
	h := http.Header{}
	for k, v := range hook.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Gatehouse-Webhook/1")
	if hook.Secret != "" {
		h.Set(SignatureHeader, Sign(hook.Secret, n.now().Unix(), body))
	}
	if err := n.post(ctx, u, h, body, hook.timeout()); err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	return nil
}

// post makes one POST of body within timeout; a non-2xx answer is a
// StatusError.
func (n *Notifier) post(ctx context.Context, u *url.URL, h http.Header, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header = h
	resp, err := n.client.Do(req)
	if err != nil {
		return StripURL(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Code: resp.StatusCode}
	}
	return nil
}

// StripURL drops the *url.Error wrapper of an HTTP client error: it
// repeats the full URL, query string included, which may carry credentials.
func StripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// StatusError is a non-2xx answer. It matches ErrStatus.
type StatusError struct{ Code int }

func (e *StatusError) Error() string     { return fmt.Sprintf("webhook answered %d", e.Code) }
func (e *StatusError) Is(err error) bool { return err == ErrStatus }

// retryable: transport failures, timeouts, 5xx, 408 and 429. A refused
// endpoint, a redirect or another 4xx is a configuration problem that a
// retry will not fix.
func retryable(err error) bool {
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrClosed) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusRequestTimeout || se.Code == http.StatusTooManyRequests
	}
	return true
}

// failed logs a failed attempt (never the token) and records webhook.failure.
func (n *Notifier) failed(ctx context.Context, hook Webhook, ev CodeEvent, attempt int, err error, willRetry bool) {
	endpoint := hook.Endpoint
	if u, perr := url.Parse(hook.Endpoint); perr == nil {
		endpoint = redact(u)
	} else {
		endpoint = "(unparseable)"
	}
	n.logger().WarnContext(ctx, "webhook delivery failed",
		"event_id", ev.ID, "user", ev.User.ID, "channel", ev.Channel, "endpoint", endpoint,
		"attempt", attempt, "will_retry", willRetry, "err", err.Error())
	if n.Audit == nil {
		return
	}
	_ = n.Audit.Record(ctx, store.AuditEvent{
		Type:   audit.WebhookFailure,
		UserID: ev.User.ID,
		Detail: map[string]string{
			"event_id":   ev.ID,
			"channel":    ev.Channel,
			"endpoint":   endpoint,
			"attempt":    strconv.Itoa(attempt),
			"will_retry": strconv.FormatBool(willRetry),
			"error":      err.Error(),
		},
	})
}

// redact drops the query and fragment, which may carry credentials.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// PostForm delivers form to endpoint in the background (what names it in
// logs), with the webhook's guards, timeout, retries and bound: the caller
// never waits for the receiver. False when it could not even be queued
// (refused endpoint, closed, queue full); that is logged.
func (n *Notifier) PostForm(ctx context.Context, endpoint string, form url.Values, what string) bool {
	n.init()
	u, err := parseEndpoint(endpoint, n.AllowPrivate)
	if err != nil {
		n.logger().WarnContext(ctx, what+" refused", "err", err.Error())
		return false
	}
	body := []byte(form.Encode())
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "User-Agent": {"Gatehouse/1"}}
	started, full := n.bg.start(ctx, retryPlan{
		immediate: true,
		retries:   retryCount(n.Retries),
		backoff:   n.Backoff,
		attempt:   func(ctx context.Context) error { return n.post(ctx, u, h.Clone(), body, DefaultTimeout) },
		retryable: retryable,
		failed: func(ctx context.Context, attempt int, err error, more bool) {
			n.logger().WarnContext(ctx, what+" delivery failed", "endpoint", redact(u), "attempt", attempt, "will_retry", more, "err", err.Error())
		},
		delivered: func(ctx context.Context, attempt int) {
			n.logger().DebugContext(ctx, what+" delivered", "endpoint", redact(u), "attempt", attempt)
		},
	})
	if full {
		n.logger().WarnContext(ctx, what+" queue full; not sent", "endpoint", redact(u))
	}
	return started
}

// Close stops scheduling retries and waits for the running ones until ctx
// ends; then it cancels them and waits for them to stop.
func (n *Notifier) Close(ctx context.Context) error {
	n.init()
	return n.bg.close(ctx, "notifier")
}
