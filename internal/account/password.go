package account

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Audit event types of password changes.
const (
	EventPasswordChanged        = "user.password_changed"         // detail: reason (reset | change)
	EventPasswordResetRequested = "user.password_reset_requested" // detail: sent (true | false)
)

// Forgotten-password limits.
const (
	// ResetSends is how many reset e-mails one address (or, for an unknown
	// address, whatever was typed) may get per ResetWindow.
	ResetSends  = 5
	ResetWindow = time.Hour
	// maxEndedSessions bounds the sessions told of a change (back-channel
	// logout); the rest end too, untold.
	maxEndedSessions = 100
)

// ErrInvalidResetCode is every refusal of a reset: a wrong, expired, spent
// or tampered code or reset id, too many tries, or a user that cannot sign
// in any more.
var ErrInvalidResetCode = errors.New("the reset code is wrong or has expired")

// Passwords sets, changes and resets users' passwords. Every way ends the
// user's other sessions, refresh and access tokens and remembered devices
// (OAuth 2.0 Security BCP §4.14); a second factor stays as it was, so it
// is still asked for at the next sign-in.
type Passwords struct {
	Store     store.Store
	Hasher    *secret.PasswordHasher
	Audit     *audit.Recorder
	TwoFactor *twofactor.Service
	Logger    *slog.Logger
	Now       func() time.Time
	// ResetPage is the absolute URL of the hosted page that sets a new
	// password; reset e-mails link to it with the reset id and code.
	ResetPage string
	// SessionsEnded, when set, is told of the browser sessions a change
	// ended, after it committed (back-channel logout).
	SessionsEnded func(ctx context.Context, userID string, ended []store.BrowserSession)

	sends sync.WaitGroup
}

// Keep says what a change of password leaves alive: the browser session
// and the token family of whoever changed it. The zero Keep ends all.
type Keep struct {
	SessionID   string
	TokenFamily string
}

// EndCredentials ends what a user's old credentials gave: browser
// sessions and tokens (but keep's), and remembered devices. It returns how
// many devices it forgot. Run it in the transaction that changes them.
func EndCredentials(ctx context.Context, st store.Store, userID string, keep Keep) (int64, error) {
	if err := st.DeleteBrowserSessionsByUser(ctx, userID, keep.SessionID); err != nil {
		return 0, fmt.Errorf("end sessions of %q: %w", userID, err)
	}
	if err := st.DeactivateOtherOAuthRequests(ctx, userID, keep.TokenFamily); err != nil {
		return 0, fmt.Errorf("deactivate tokens of %q: %w", userID, err)
	}
	// Remembered browsers skip a second factor after the password: new
	// credentials mean proving the factor again.
	n, err := st.DeleteRememberedDevices(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("forget remembered devices of %q: %w", userID, err)
	}
	return n, nil
}

func (p *Passwords) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

func (p *Passwords) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Set replaces userID's password with pw, which must meet rules, and ends
// what the old one gave but keep. reason goes to the audit event.
func (p *Passwords) Set(ctx context.Context, userID, pw string, rules resource.AuthConfig, keep Keep, reason string, m twofactor.Meta) error {
	if err := rules.CheckNewPassword(pw); err != nil {
		return err
	}
	// The hash is the slow part: outside the transaction.
	hash, err := p.Hasher.Hash(ctx, pw)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	var ended []store.BrowserSession
	err = p.Store.InTx(ctx, func(ctx context.Context) error {
		u, err := p.Store.GetUser(ctx, userID)
		if err != nil {
			return fmt.Errorf("get user %q: %w", userID, err)
		}
		u.PasswordHash = hash
		if _, _, err := p.Store.PutUser(ctx, u, u.Version); err != nil {
			return fmt.Errorf("put user %q: %w", userID, err)
		}
		if p.SessionsEnded != nil {
			all, err := p.Store.ListBrowserSessionsByUser(ctx, userID, maxEndedSessions)
			if err != nil {
				return fmt.Errorf("list sessions of %q: %w", userID, err)
			}
			for _, s := range all {
				if s.ID != keep.SessionID {
					ended = append(ended, s)
				}
			}
		}
		_, err = EndCredentials(ctx, p.Store, userID, keep)
		return err
	})
	if err != nil {
		return err
	}
	if p.SessionsEnded != nil && len(ended) > 0 {
		p.SessionsEnded(ctx, userID, ended)
	}
	p.record(ctx, EventPasswordChanged, userID, m, map[string]string{"reason": reason})
	return nil
}

// ResetRequest asks for a forgotten password's e-mail.
type ResetRequest struct {
	Login          string // the e-mail address (or username) typed
	Webhook        notify.Webhook
	twofactor.Meta // ClientID, when set, goes in the link: the page wears that app's theme
}

// ResetStarted is the answer to every accepted reset request, whether or
// not the address belongs to anyone.
type ResetStarted struct {
	ID        string // the reset id: only the e-mailed code spends it
	ExpiresAt time.Time
}

// RequestReset e-mails a single-use code and link to the user the login
// names, if there is one with an address who may sign in. The answer and
// its timing are the same either way: the e-mail goes out in the
// background. At most ResetSends requests per hour for one user (or one
// unknown login); beyond that a *ThrottledError.
func (p *Passwords) RequestReset(ctx context.Context, in ResetRequest) (ResetStarted, error) {
	now := p.now()
	login := strings.TrimSpace(in.Login)
	if login == "" || len(login) > 256 {
		return ResetStarted{}, ErrInvalidCredentials
	}
	u, err := p.Store.FindUser(ctx, login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return ResetStarted{}, fmt.Errorf("find user: %w", err)
	}
	known := err == nil
	key := "pwreset:login:" + strings.ToLower(login)
	if known {
		key = "pwreset:user:" + u.ID
	}
	n, err := p.Store.HitCounter(ctx, key, ResetWindow, now)
	if err != nil {
		return ResetStarted{}, fmt.Errorf("count reset requests: %w", err)
	}
	if n > ResetSends {
		return ResetStarted{}, &ThrottledError{Until: windowEnd(now, ResetWindow), Now: now}
	}
	started := ResetStarted{ID: "pwreset:" + secret.RandomToken(16), ExpiresAt: now.Add(twofactor.ResetTTL)}
	send := known && !u.Inactive && u.Email != ""
	// Everything after the counter, the audit event included, happens in
	// the background for every request: a write only unknown addresses
	// made would time them apart.
	p.sends.Add(1)
	go func(ctx context.Context) {
		defer p.sends.Done()
		if !send {
			p.record(ctx, EventPasswordResetRequested, "", in.Meta, map[string]string{"sent": "false"})
			return
		}
		_, err := p.TwoFactor.SendCode(ctx, twofactor.SendInput{
			User: u, Purpose: twofactor.PurposeReset, Channel: twofactor.MethodEmail, Destination: u.Email,
			BindingID: started.ID, Webhook: in.Webhook, Meta: in.Meta,
			LinkFor: func(code string) string { return p.resetLink(started.ID, code, in.ClientID) },
		})
		if err != nil {
			p.logger().WarnContext(ctx, "password reset e-mail not sent", "user", u.ID, "err", err, "request_id", in.RequestID)
		}
		p.record(ctx, EventPasswordResetRequested, u.ID, in.Meta, map[string]string{"sent": fmt.Sprint(err == nil)})
	}(context.WithoutCancel(ctx))
	return started, nil
}

// resetLink is the e-mail's link to the page that sets the new password.
func (p *Passwords) resetLink(id, code, clientID string) string {
	q := url.Values{"reset": {id}, "code": {code}}
	if clientID != "" {
		q.Set("client_id", clientID)
	}
	return p.ResetPage + "?" + q.Encode()
}

// WaitForSends waits for the reset e-mails being sent (tests, shutdown).
func (p *Passwords) WaitForSends() { p.sends.Wait() }

// ConfirmReset spends the code of reset id and sets the new password of
// the user it was sent to, ending every session and token of theirs. It
// returns that user's id. A new password that breaks the rules is a
// *resource.PasswordRuleError and spends nothing; every other refusal is
// ErrInvalidResetCode.
func (p *Passwords) ConfirmReset(ctx context.Context, resetID, code, pw string, rules resource.AuthConfig, m twofactor.Meta) (string, error) {
	if !strings.HasPrefix(resetID, "pwreset:") || len(resetID) > 64 {
		return "", ErrInvalidResetCode
	}
	if err := rules.CheckNewPassword(pw); err != nil {
		return "", err
	}
	otc, err := p.TwoFactor.VerifyCode(ctx, twofactor.VerifyCodeInput{
		BindingID: resetID, Code: code, Purpose: twofactor.PurposeReset, Meta: m,
	})
	if errors.Is(err, twofactor.ErrInvalidCode) {
		return "", ErrInvalidResetCode
	}
	if err != nil {
		return "", err
	}
	u, err := p.Store.GetUser(ctx, otc.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", ErrInvalidResetCode
	case err != nil:
		return "", fmt.Errorf("get user %q: %w", otc.UserID, err)
	case u.Inactive || u.Email != otc.Destination:
		// Deactivated, or the address changed since: the code proved an
		// address that no longer opens this account.
		return "", ErrInvalidResetCode
	}
	if err := p.Set(ctx, u.ID, pw, rules, Keep{}, "reset", m); err != nil {
		return "", err
	}
	return u.ID, nil
}

func (p *Passwords) record(ctx context.Context, kind, userID string, m twofactor.Meta, detail map[string]string) {
	if p.Audit == nil {
		return
	}
	_ = p.Audit.Record(ctx, store.AuditEvent{Type: kind, UserID: userID, ClientID: m.ClientID,
		RemoteAddr: m.RemoteAddr, RequestID: m.RequestID, Detail: detail})
}
