package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// TLS modes of an SMTP server.
const (
	SMTPStartTLS = "starttls" // plain connection upgraded with STARTTLS, which is required
	SMTPTLS      = "tls"      // TLS from the first byte (SMTPS, usually port 465)
	SMTPNoTLS    = "none"     // no encryption (a relay on the same host or network)
)

// DefaultSMTPTimeout bounds one delivery attempt (dial, TLS, every command).
const DefaultSMTPTimeout = 5 * time.Second

// Errors of an e-mail delivery, besides transport errors.
var (
	// ErrHeaderInjection: a line break (or NUL) in an address, name or
	// subject. Such a message is never sent.
	ErrHeaderInjection = errors.New("line break in an e-mail header field")
	// ErrBadAddress: an address that does not parse.
	ErrBadAddress = errors.New("not a valid e-mail address")
	// ErrNoSMTP: no SMTP server is configured.
	ErrNoSMTP = errors.New("no SMTP server is configured")
)

// SMTP is an outgoing mail server and the sender address.
type SMTP struct {
	Host     string
	Port     int // 0: 587 for starttls, 465 for tls, 25 for none
	Username string
	Password string // in clear here; sealed at rest by the caller
	TLS      string // SMTPStartTLS (default) | SMTPTLS | SMTPNoTLS
	From     string // "Name <addr>" or "addr"
	// TimeoutMS bounds each attempt; 0 means DefaultSMTPTimeout, capped at MaxTimeout.
	TimeoutMS int
	// Trusted marks the server of Gatehouse's own configuration (file or
	// environment): the operator's relay may be on a private network. A
	// server named in an AuthConfig is not trusted: it must be on a public
	// address unless the Mailer allows private ones.
	Trusted bool
}

// Configured reports whether s names a server and a sender.
func (s SMTP) Configured() bool { return s.Host != "" && s.From != "" }

func (s SMTP) port() int {
	if s.Port > 0 {
		return s.Port
	}
	switch s.TLS {
	case SMTPTLS:
		return 465
	case SMTPNoTLS:
		return 25
	}
	return 587
}

func (s SMTP) timeout() time.Duration {
	if s.TimeoutMS <= 0 {
		return DefaultSMTPTimeout
	}
	return min(time.Duration(s.TimeoutMS)*time.Millisecond, MaxTimeout)
}

// Mail is one message. Text and HTML are the two alternatives of a
// multipart/alternative body; HTML may be empty.
type Mail struct {
	ID      string // identifies the message in logs across retries; generated when empty
	Kind    string // what it is, for logs and metrics: two_factor.code, password_reset, …
	UserID  string
	To      string
	Subject string
	Text    string
	HTML    string
}

// CheckHeader refuses a header value with a line break or NUL: such a
// value could add headers or recipients to a message.
func CheckHeader(v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return ErrHeaderInjection
	}
	return nil
}

// CheckAddress checks an address (with an optional display name) for a
// header: no line breaks, and one address that parses.
func CheckAddress(v string) error {
	if err := CheckHeader(v); err != nil {
		return err
	}
	if _, err := mail.ParseAddress(v); err != nil {
		return fmt.Errorf("%w: %q", ErrBadAddress, v)
	}
	return nil
}

// Mailer sends e-mail over SMTP. The first attempt of a delivery runs
// inside Send, bounded by the server's timeout; a failure worth retrying is
// retried in the background with exponential backoff, at most Retries
// times, with at most MaxInFlight retry sequences at once. Failures are
// logged (never the body: it holds codes and links) and counted.
type Mailer struct {
	Logger *slog.Logger
	Audit  *audit.Recorder // optional: mail.failure events
	// AllowPrivate lets an untrusted (AuthConfig) server be on a private,
	// loopback or link-local address (--dev, GATEHOUSE_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	Retries      int           // 0: DefaultRetries, <0: none
	Backoff      time.Duration // 0: DefaultBackoff
	MaxInFlight  int           // 0: DefaultMaxInFlight

	sent, failed, retried, dropped atomic.Uint64

	once sync.Once
	bg   retrier
}

func (m *Mailer) init() {
	m.once.Do(func() { m.bg.init(m.MaxInFlight) })
}

func (m *Mailer) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// MailStats are the mailer's counters since it started (the server
// exports them as metrics).
type MailStats struct {
	Sent    uint64 // accepted by the SMTP server
	Failed  uint64 // failed delivery attempts
	Retried uint64 // attempts that were retries
	Dropped uint64 // given up on: retries exhausted, refused or queue full
}

// Stats returns the mailer's counters.
func (m *Mailer) Stats() MailStats {
	return MailStats{Sent: m.sent.Load(), Failed: m.failed.Load(), Retried: m.retried.Load(), Dropped: m.dropped.Load()}
}

// Failures is the number of failed attempts so far (for tests and metrics).
func (m *Mailer) Failures() uint64 { return m.failed.Load() }

// Sent is the number of messages the server accepted so far.
func (m *Mailer) Sent() uint64 { return m.sent.Load() }

// Send delivers msg through srv. The message is built and checked first
// (ErrHeaderInjection, ErrBadAddress: nothing is sent); the first attempt
// happens now and takes at most the server's timeout; a retryable failure
// is retried in the background, detached from ctx. The error of the first
// attempt is returned; callers on a page log it and carry on.
func (m *Mailer) Send(ctx context.Context, srv SMTP, msg Mail) error {
	m.init()
	if msg.ID == "" {
		msg.ID = secret.RandomToken(16)
	}
	if !srv.Configured() {
		return ErrNoSMTP
	}
	built, err := buildMessage(srv, msg)
	if err != nil {
		m.fail(ctx, srv, msg, 1, err, false)
		m.dropped.Add(1)
		return err
	}
	err = m.attempt(ctx, srv, built)
	if err == nil {
		m.sent.Add(1)
		return nil
	}
	retry := smtpRetryable(err) && m.startRetries(ctx, srv, msg)
	if !retry {
		m.dropped.Add(1)
	}
	m.fail(ctx, srv, msg, 1, err, retry)
	return err
}

func buildMessage(srv SMTP, msg Mail) (*gomail.Msg, error) {
	for _, v := range []string{srv.From, msg.To, msg.Subject} {
		if err := CheckHeader(v); err != nil {
			return nil, err
		}
	}
	if err := CheckAddress(srv.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := CheckAddress(msg.To); err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	m := gomail.NewMsg()
	if err := m.From(srv.From); err != nil {
		return nil, fmt.Errorf("%w: from: %v", ErrBadAddress, err)
	}
	if err := m.To(msg.To); err != nil {
		return nil, fmt.Errorf("%w: to: %v", ErrBadAddress, err)
	}
	m.Subject(msg.Subject)
	m.SetMessageID()
	m.SetDate()
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetBodyString(gomail.TypeTextPlain, msg.Text)
	if msg.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	}
	return m, nil
}

// attempt dials srv and sends built, within the server's timeout.
func (m *Mailer) attempt(ctx context.Context, srv SMTP, built *gomail.Msg) error {
	timeout := srv.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{Timeout: timeout}
	if !srv.Trusted && !m.AllowPrivate {
		d.Control = refuseNonPublic
	}
	dial := d.DialContext
	opts := []gomail.Option{
		gomail.WithPort(srv.port()),
		gomail.WithTimeout(timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: srv.Host, MinVersion: tls.VersionTLS12}),
	}
	switch srv.TLS {
	case SMTPTLS:
		td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: srv.Host, MinVersion: tls.VersionTLS12}}
		dial = td.DialContext
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case SMTPNoTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	opts = append(opts, gomail.WithDialContextFunc(dial))
	if srv.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(srv.Username), gomail.WithPassword(srv.Password))
	}
	c, err := gomail.NewClient(srv.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, built); err != nil {
		return fmt.Errorf("smtp %s:%d: %w", srv.Host, srv.port(), err)
	}
	return nil
}

// smtpRetryable: everything but a refused address, a message we would not
// send, and a permanent (5xx) answer.
func smtpRetryable(err error) bool {
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrClosed) || errors.Is(err, ErrHeaderInjection) || errors.Is(err, ErrBadAddress) {
		return false
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.IsTemp()
	}
	return true
}

func (m *Mailer) startRetries(ctx context.Context, srv SMTP, msg Mail) bool {
	started, full := m.bg.start(ctx, retryPlan{
		retries: retryCount(m.Retries),
		backoff: m.Backoff,
		attempt: func(ctx context.Context) error {
			m.retried.Add(1)
			// A fresh message per attempt: go-mail records the outcome on it.
			built, err := buildMessage(srv, msg)
			if err != nil {
				return err
			}
			return m.attempt(ctx, srv, built)
		},
		retryable: smtpRetryable,
		failed: func(ctx context.Context, attempt int, err error, more bool) {
			if !more {
				m.dropped.Add(1)
			}
			m.fail(ctx, srv, msg, attempt, err, more)
		},
		delivered: func(ctx context.Context, attempt int) {
			m.sent.Add(1)
			m.logger().InfoContext(ctx, "mail delivered after retry", "mail_id", msg.ID, "kind", msg.Kind, "user", msg.UserID, "attempt", attempt)
		},
	})
	if full {
		m.logger().WarnContext(ctx, "mail retry queue full; not retrying", "mail_id", msg.ID, "kind", msg.Kind, "user", msg.UserID)
	}
	return started
}

// fail logs and counts a failed attempt. The body (code, link) and the
// password never appear; the recipient is masked.
func (m *Mailer) fail(ctx context.Context, srv SMTP, msg Mail, attempt int, err error, willRetry bool) {
	m.failed.Add(1)
	server := net.JoinHostPort(srv.Host, strconv.Itoa(srv.port()))
	m.logger().WarnContext(ctx, "mail delivery failed",
		"mail_id", msg.ID, "kind", msg.Kind, "user", msg.UserID, "to", maskAddress(msg.To), "server", server,
		"attempt", attempt, "will_retry", willRetry, "err", err.Error())
	if m.Audit == nil {
		return
	}
	_ = m.Audit.Record(ctx, store.AuditEvent{
		Type:   audit.MailFailure,
		UserID: msg.UserID,
		Detail: map[string]string{
			"mail_id": msg.ID, "kind": msg.Kind, "server": server,
			"attempt": strconv.Itoa(attempt), "will_retry": strconv.FormatBool(willRetry), "error": err.Error(),
		},
	})
}

// maskAddress keeps the first letter and the domain of an address.
func maskAddress(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 {
		return "***"
	}
	return a[:1] + "***" + a[at:]
}

// Close stops scheduling retries and waits for the running ones until ctx
// ends; then it cancels them and waits for them to stop.
func (m *Mailer) Close(ctx context.Context) error {
	m.init()
	return m.bg.close(ctx, "mailer")
}
