package notify_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/templates"
)

func localSMTP(port int) notify.SMTP {
	return notify.SMTP{Host: "127.0.0.1", Port: port, TLS: notify.SMTPNoTLS, From: "Gatehouse <noreply@example.com>", TimeoutMS: 500, Trusted: true}
}

func TestMailerDeliversMultipartAlternative(t *testing.T) {
	srv := smtptest.Start(t)
	var logs bytes.Buffer
	m := &notify.Mailer{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Retries: -1}
	mt := &notify.MailTemplates{FS: templates.MailFS}
	r, err := mt.Render("code", "en", map[string]any{"Code": "493817", "Minutes": 10, "Brand": "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), localSMTP(srv.Port), notify.Mail{Kind: "two_factor.code", UserID: "u1", To: "ann@example.com", Subject: r.Subject, Text: r.Text, HTML: r.HTML})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	msg, ok := srv.Wait(1, 5*time.Second)
	if !ok {
		t.Fatal("no message arrived")
	}
	h := msg.Header()
	t.Run("the envelope and headers name the sender and the recipient", func(t *testing.T) {
		if msg.From != "noreply@example.com" || len(msg.To) != 1 || msg.To[0] != "ann@example.com" {
			t.Fatalf("envelope from %q to %v", msg.From, msg.To)
		}
		if h.Get("Subject") != "Your verification code" || !strings.Contains(h.Get("From"), "noreply@example.com") {
			t.Fatalf("subject %q from %q", h.Get("Subject"), h.Get("From"))
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "multipart/alternative") {
			t.Fatalf("content type %q", h.Get("Content-Type"))
		}
	})
	t.Run("both the plain-text and the HTML part carry the code", func(t *testing.T) {
		parts, err := msg.Parts()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(parts["text/plain"], "493817") || !strings.Contains(parts["text/html"], "493817") {
			t.Fatalf("parts: %q", parts)
		}
		if !strings.Contains(parts["text/html"], "<html lang=\"en\">") {
			t.Fatalf("html part: %q", parts["text/html"])
		}
	})
	t.Run("the delivery is counted", func(t *testing.T) {
		if m.Sent() != 1 || m.Failures() != 0 {
			t.Fatalf("sent %d failures %d", m.Sent(), m.Failures())
		}
	})
}

func TestMailerRefusesLineBreaksInHeaders(t *testing.T) {
	srv := smtptest.Start(t)
	cases := []struct {
		name    string
		from    string
		to      string
		subject string
	}{
		{"a recipient with CR LF and a Bcc is refused", "noreply@example.com", "ann@example.com\r\nBcc: eve@example.com", "Code"},
		{"a recipient with a bare LF is refused", "noreply@example.com", "ann@example.com\nBcc: eve@example.com", "Code"},
		{"a subject with CR LF is refused", "noreply@example.com", "ann@example.com", "Code\r\nBcc: eve@example.com"},
		{"a sender name with CR LF is refused", "Gate\r\nBcc: eve@example.com <noreply@example.com>", "ann@example.com", "Code"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &notify.Mailer{Retries: -1}
			s := localSMTP(srv.Port)
			s.From = tc.from
			err := m.Send(context.Background(), s, notify.Mail{To: tc.to, Subject: tc.subject, Text: "123456"})
			if !errors.Is(err, notify.ErrHeaderInjection) {
				t.Fatalf("err = %v, want ErrHeaderInjection", err)
			}
			if m.Failures() != 1 {
				t.Fatalf("failures = %d", m.Failures())
			}
		})
	}
	t.Run("nothing reached the server", func(t *testing.T) {
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("%d messages delivered", n)
		}
	})
	t.Run("an address that does not parse is refused", func(t *testing.T) {
		m := &notify.Mailer{Retries: -1}
		err := m.Send(context.Background(), localSMTP(srv.Port), notify.Mail{To: "not an address", Subject: "x", Text: "x"})
		if !errors.Is(err, notify.ErrBadAddress) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestMailerDownOrSlowServer(t *testing.T) {
	cases := []struct {
		name string
		port func(testing.TB) int
	}{
		{"a server that refuses connections fails fast", smtptest.Closed},
		{"a server that accepts and never answers fails within the timeout", smtptest.Silent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			m := &notify.Mailer{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Retries: 1, Backoff: 10 * time.Millisecond}
			s := localSMTP(tc.port(t))
			start := time.Now()
			err := m.Send(context.Background(), s, notify.Mail{Kind: "two_factor.code", UserID: "u1", To: "ann@example.com", Subject: "Code", Text: "code 918273"})
			took := time.Since(start)
			if err == nil {
				t.Fatal("send succeeded")
			}
			if took > 3*time.Second {
				t.Fatalf("send took %v with a 500ms timeout", took)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if m.Failures() != 2 {
				t.Fatalf("failures = %d, want the first attempt and one retry", m.Failures())
			}
			out := logs.String()
			if !strings.Contains(out, "mail delivery failed") || strings.Contains(out, "918273") {
				t.Fatalf("logs: %s", out)
			}
			if st := m.Stats(); st.Failed != 2 || st.Dropped != 1 || st.Sent != 0 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

func TestMailerRefusesPrivateAddressesOfUntrustedServers(t *testing.T) {
	srv := smtptest.Start(t)
	s := localSMTP(srv.Port)
	s.Trusted = false
	t.Run("an AuthConfig server on loopback is refused at dial time", func(t *testing.T) {
		m := &notify.Mailer{Retries: -1}
		err := m.Send(context.Background(), s, notify.Mail{To: "ann@example.com", Subject: "x", Text: "x"})
		if !errors.Is(err, notify.ErrRefused) {
			t.Fatalf("err = %v, want ErrRefused", err)
		}
	})
	t.Run("with private addresses allowed it is delivered", func(t *testing.T) {
		m := &notify.Mailer{Retries: -1, AllowPrivate: true}
		if err := m.Send(context.Background(), s, notify.Mail{To: "ann@example.com", Subject: "x", Text: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, ok := srv.Wait(1, 5*time.Second); !ok {
			t.Fatal("no message")
		}
	})
}

func TestMailTemplatesRenderEveryLanguage(t *testing.T) {
	mt := &notify.MailTemplates{FS: templates.MailFS}
	subjects := map[string]bool{}
	for _, lang := range append(notify.MailLanguages, "de-CH,de;q=0.9", "xx") {
		t.Run("the code e-mail renders in "+lang, func(t *testing.T) {
			r, err := mt.Render("code", lang, map[string]any{"Code": "204816", "Minutes": 10, "Brand": "Acme"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.Text, "204816") || !strings.Contains(r.HTML, "204816") || !strings.Contains(r.Text, "10") {
				t.Fatalf("rendered %+v", r)
			}
			if strings.Contains(r.Text, "mail.code.") || strings.Contains(r.Text, "{{") {
				t.Fatalf("a message id or placeholder is left: %s", r.Text)
			}
			subjects[r.Subject] = true
		})
	}
	t.Run("each catalog language has its own subject, and unknown languages fall back to English", func(t *testing.T) {
		if len(subjects) != len(notify.MailLanguages) {
			t.Fatalf("%d distinct subjects for %d languages: %v", len(subjects), len(notify.MailLanguages), subjects)
		}
		r, _ := mt.Render("code", "xx", map[string]any{"Code": "1", "Minutes": 1})
		if r.Subject != "Your verification code" || !strings.Contains(r.HTML, `lang="en"`) {
			t.Fatalf("fallback %q", r.Subject)
		}
		r, _ = mt.Render("code", "de-CH,de;q=0.9", map[string]any{"Code": "1", "Minutes": 1})
		if r.Subject != "Ihr Bestätigungscode" || !strings.Contains(r.HTML, `lang="de"`) {
			t.Fatalf("de-CH: %q %s", r.Subject, r.HTML)
		}
	})
}
