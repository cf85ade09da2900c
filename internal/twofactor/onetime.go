package twofactor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Purposes of one-time codes. A code is only ever accepted for the purpose
// and binding it was sent for.
const (
	PurposeLogin  = "login"  // second factor of a login attempt or mfa token
	PurposeVerify = "verify" // proving a phone number or e-mail address
	// PurposeReset is a forgotten password's code. Its binding is random
	// per request (no user can be named before the code proves the
	// address), it lives ResetTTL, and its e-mail carries a link too.
	PurposeReset = "reset"
)

// ttlOf is how long a code of purpose stays usable.
func ttlOf(purpose string) time.Duration {
	if purpose == PurposeReset {
		return ResetTTL
	}
	return CodeTTL
}

// Sent describes a code that was issued. Delivered is false when the
// webhook's first attempt failed; the notifier logs that and retries in the
// background, and the user can ask for the code again.
type Sent struct {
	ID          string
	Channel     string // totp | sms | email
	Destination string
	ExpiresAt   time.Time
	Delivered   bool
}

// SendInput asks for a one-time code.
type SendInput struct {
	User        store.User
	Purpose     string // PurposeLogin | PurposeVerify | PurposeReset
	Channel     string // sms | email
	Destination string // phone number (E.164) or e-mail address
	// BindingID is what the code is for: the login attempt, mfa token or
	// verification. Only a VerifyCode/Verify naming it can spend the code.
	BindingID string
	// LinkFor, for a PurposeReset code, is the page the e-mail sends the
	// user to, given the code (the link carries it); the webhook payload
	// carries it as "link".
	LinkFor func(code string) string
	Webhook notify.Webhook
	Meta
}

// SendCode issues 6 random digits for in.Purpose, stores their keyed hash
// bound to in.BindingID with a 10-minute expiry (ResetTTL for a reset), and delivers them through
// the webhook. At most SendLimit codes go to one user and destination per
// hour (ErrTooManySends beyond). ErrNoWebhook without a webhook endpoint.
func (s *Service) SendCode(ctx context.Context, in SendInput) (Sent, error) {
	if in.Channel != MethodSMS && in.Channel != MethodEmail {
		return Sent{}, fmt.Errorf("%w %q for a one-time code", ErrBadMethod, in.Channel)
	}
	if in.Purpose != PurposeLogin && in.Purpose != PurposeVerify && in.Purpose != PurposeReset {
		return Sent{}, fmt.Errorf("unknown one-time code purpose %q", in.Purpose)
	}
	if in.BindingID == "" || in.Destination == "" {
		return Sent{}, errors.New("a one-time code needs a binding and a destination")
	}
	if _, byMail := s.mailFor(in.Channel, in.Webhook); !byMail && (in.Webhook.Endpoint == "" || s.Notifier == nil) {
		return Sent{}, ErrNoWebhook
	}
	now := s.now()
	// Reset codes count apart: anyone can ask for a reset e-mail, and
	// that must not use up the user's sign-in codes.
	purposes := []string{PurposeLogin, PurposeVerify}
	if in.Purpose == PurposeReset {
		purposes = []string{PurposeReset}
	}
	n, err := s.Store.CountOneTimeCodes(ctx, in.User.ID, in.Destination, now.Add(-SendWindow), purposes...)
	if err != nil {
		return Sent{}, fmt.Errorf("count codes sent to %q: %w", in.User.ID, err)
	}
	if n >= SendLimit {
		s.logger().WarnContext(ctx, "one-time code send limit reached",
			"user", in.User.ID, "channel", in.Channel, "request_id", in.RequestID)
		return Sent{}, ErrTooManySends
	}
	code := secret.RandomDigits(Digits)
	otc := store.OneTimeCode{
		ID:          secret.RandomToken(16),
		UserID:      in.User.ID,
		Purpose:     in.Purpose,
		Channel:     in.Channel,
		Destination: in.Destination,
		BindingID:   in.BindingID,
		CodeHash:    s.oneTimeHash(in.Purpose, in.BindingID, code),
		CreatedAt:   now,
		ExpiresAt:   now.Add(ttlOf(in.Purpose)),
	}
	if err := s.Store.CreateOneTimeCode(ctx, otc); err != nil {
		return Sent{}, fmt.Errorf("store one-time code for %q: %w", in.User.ID, err)
	}
	sent := Sent{ID: otc.ID, Channel: in.Channel, Destination: in.Destination, ExpiresAt: otc.ExpiresAt}
	ev := notify.CodeEvent{
		ID: otc.ID, Token: code, Channel: in.Channel, Destination: in.Destination, ExpiresAt: otc.ExpiresAt,
	}
	if in.Purpose == PurposeReset {
		ev.Event = notify.EventPasswordReset
		if in.LinkFor != nil {
			ev.Link = in.LinkFor(code)
		}
	}
	sent.Delivered = s.deliver(ctx, in.User, in.Webhook, ev, in.Purpose, in.Meta)
	return sent, nil
}

// deliver posts a code and records the send. Delivery errors are the
// notifier's to log and retry; they never fail the caller's page.
func (s *Service) deliver(ctx context.Context, u store.User, hook notify.Webhook, ev notify.CodeEvent, purpose string, m Meta) bool {
	ev.User = notify.User{ID: u.ID, Email: u.Email, PhoneNumber: u.PhoneNumber}
	via := "webhook"
	var err error
	if srv, ok := s.mailFor(ev.Channel, hook); ok {
		via = "smtp"
		err = s.mailCode(ctx, u, srv, hook.Messages, ev)
	} else {
		// The stored webhook secret is sealed at rest; open it for signing.
		var sec string
		sec, err = resource.OpenWebhookSecret(s.Sealer, hook.Secret)
		if err != nil {
			s.logger().ErrorContext(ctx, "webhook secret cannot be opened; code not sent", "err", err)
		} else {
			hook.Secret = sec
			err = s.Notifier.Send(ctx, hook, ev)
		}
	}
	kind, detail := audit.CodeSent, map[string]string{
		"channel":     ev.Channel,
		"destination": MaskDestination(ev.Destination),
		"event_id":    ev.ID,
		"via":         via,
		"delivered":   strconv.FormatBool(err == nil),
	}
	if ev.Event == notify.EventSignInPaused {
		// A notice, not a code: it has an address instead of a purpose.
		kind, detail["address"] = audit.LoginPausedNotice, ev.Address
	} else {
		detail["purpose"] = purpose
	}
	s.record(ctx, kind, u.ID, m, detail)
	return err == nil
}

// mailFor is the SMTP server an e-mail code goes through, if any: the
// AuthConfig's (hook.Mail), else the server's. Other channels never go by mail.
func (s *Service) mailFor(channel string, hook notify.Webhook) (notify.SMTP, bool) {
	if channel != MethodEmail || s.Mailer == nil || s.Mail == nil {
		return notify.SMTP{}, false
	}
	if hook.Mail != nil && hook.Mail.Configured() {
		return *hook.Mail, true
	}
	if s.SMTP.Configured() {
		return s.SMTP, true
	}
	return notify.SMTP{}, false
}

// mailCode renders the code e-mail and sends it. The first attempt is
// bounded by the server's timeout; the mailer logs, counts and retries
// failures.
func (s *Service) mailCode(ctx context.Context, u store.User, srv notify.SMTP, reworded map[string]map[string]string, ev notify.CodeEvent) error {
	pw, err := resource.OpenSMTPPassword(s.Sealer, srv.Password)
	if err != nil {
		s.logger().ErrorContext(ctx, "smtp password cannot be opened; code not sent", "err", err)
		return err
	}
	srv.Password = pw
	name, kind, ttl := "code", "two_factor.code", CodeTTL
	switch ev.Event {
	case notify.EventPasswordReset:
		name, kind, ttl = "reset", notify.EventPasswordReset, ResetTTL
	case notify.EventSignInPaused:
		name, kind = "paused", notify.EventSignInPaused
	}
	msg, err := s.Mail.RenderWith(name, notify.MailLanguage(ctx, resource.UserLocale(u)), reworded, map[string]any{
		"Code": ev.Token, "Link": ev.Link, "Minutes": int(ttl / time.Minute), "Brand": "Gatehouse",
		"Address": ev.Address, "Count": ev.Failures, "Until": ev.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"),
	})
	if err != nil {
		s.logger().ErrorContext(ctx, "code e-mail cannot be rendered; code not sent", "err", err)
		return err
	}
	return s.Mailer.Send(ctx, srv, notify.Mail{
		ID: ev.ID, Kind: kind, UserID: u.ID, To: ev.Destination,
		Subject: msg.Subject, Text: msg.Text, HTML: msg.HTML,
	})
}

// NotifySignInPaused tells u, by e-mail (the AuthConfig's or the server's
// SMTP, else hook's webhook), that a number of wrong passwords (failures)
// from addr paused sign-in from there until the time until. It carries no code and no link: a
// message anyone could provoke must not be a way in. False when u has no
// address or nothing can deliver it.
func (s *Service) NotifySignInPaused(ctx context.Context, u store.User, hook notify.Webhook, addr string, failures int, until time.Time, m Meta) bool {
	if u.Email == "" {
		return false
	}
	if _, byMail := s.mailFor(MethodEmail, hook); !byMail && (hook.Endpoint == "" || s.Notifier == nil) {
		return false
	}
	ev := notify.CodeEvent{
		Event: notify.EventSignInPaused, ID: secret.RandomToken(16), Channel: MethodEmail, Destination: u.Email,
		ExpiresAt: until, Address: addr, Failures: failures,
	}
	return s.deliver(ctx, u, hook, ev, "", m)
}

// LoginCodeInput asks for the code of a login's code prompt.
type LoginCodeInput struct {
	User      store.User
	BindingID string // the login attempt or mfa token; used for sms/e-mail
	PastSteps int    // for the expiry announced with a TOTP code
	Webhook   notify.Webhook
	Meta
}

// SendLoginCode delivers the code a login's prompt asks for, through the
// AuthConfig's webhook: for sms/e-mail a fresh one-time code bound to
// in.BindingID; for TOTP the current code (Aidbox's webhook), which stays
// subject to the replay rule like one typed from an app. ErrNoWebhook when
// there is no endpoint (for TOTP the caller simply shows the prompt).
func (s *Service) SendLoginCode(ctx context.Context, in LoginCodeInput) (Sent, error) {
	tf, err := s.Store.GetTwoFactor(ctx, in.User.ID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !tf.Enabled) {
		return Sent{}, ErrNotEnabled
	}
	if err != nil {
		return Sent{}, fmt.Errorf("get second factor of %q: %w", in.User.ID, err)
	}
	_, byMail := s.mailFor(tf.Method, in.Webhook)
	if !byMail && (in.Webhook.Endpoint == "" || s.Notifier == nil) {
		return Sent{}, ErrNoWebhook
	}
	switch tf.Method {
	case MethodSMS, MethodEmail:
		return s.SendCode(ctx, SendInput{
			User: in.User, Purpose: PurposeLogin, Channel: tf.Method, Destination: tf.Destination,
			BindingID: in.BindingID, Webhook: in.Webhook, Meta: in.Meta,
		})
	case MethodTOTP:
		return s.pushTOTP(ctx, tf, in)
	}
	return Sent{}, fmt.Errorf("second factor of %q: %w %q", in.User.ID, ErrBadMethod, tf.Method)
}

func (s *Service) pushTOTP(ctx context.Context, tf store.TwoFactor, in LoginCodeInput) (Sent, error) {
	now := s.now()
	n, err := s.Store.HitCounter(ctx, "2fa:totp-push:"+in.User.ID, SendWindow, now)
	if err != nil {
		return Sent{}, fmt.Errorf("count totp pushes for %q: %w", in.User.ID, err)
	}
	if n > TOTPSendLimit {
		s.logger().WarnContext(ctx, "totp webhook push limit reached", "user", in.User.ID, "request_id", in.RequestID)
		return Sent{}, ErrTooManySends
	}
	secret, err := s.openSecret(tf)
	if err != nil {
		return Sent{}, err
	}
	// A code at or before the last accepted step would be refused as a
	// replay, so push the next step instead: one future step is accepted.
	// Beyond that there is nothing usable to send until time catches up.
	step := max(Step(now), tf.LastStep+1)
	if step > Step(now)+1 {
		return Sent{}, ErrNothingToSend
	}
	code, err := codeAt(secret, step)
	if err != nil {
		return Sent{}, err
	}
	// The code stays acceptable while its step is within the past window.
	past := min(max(in.PastSteps, 0), MaxPastSteps)
	exp := time.Unix((step+1+int64(past))*Period, 0).UTC()
	sent := Sent{ID: newEventID(), Channel: MethodTOTP, ExpiresAt: exp}
	sent.Delivered = s.deliver(ctx, in.User, in.Webhook, notify.CodeEvent{
		ID: sent.ID, Token: code, Channel: MethodTOTP, ExpiresAt: exp,
	}, PurposeLogin, in.Meta)
	return sent, nil
}

func newEventID() string { return secret.RandomToken(16) }

// VerifyCodeInput is a submitted code for a PurposeVerify binding, or a
// PurposeReset one.
type VerifyCodeInput struct {
	UserID    string
	BindingID string
	Code      string
	// Purpose is PurposeVerify ("") or PurposeReset. A reset's code names
	// its user: UserID is not compared, and the record tells who it was.
	Purpose string
	Meta
}

func (in VerifyCodeInput) purpose() string {
	if in.Purpose == "" {
		return PurposeVerify
	}
	return in.Purpose
}

// VerifyCode spends a verification code (PurposeVerify) and returns the
// record, whose Channel and Destination say what was proven. A binding gets
// at most MaxAttempts tries; after that even the right code is refused and
// a new code must be sent. Every refusal is ErrInvalidCode. Second-factor
// codes of a login go through Verify instead, with the factor's lockout.
func (s *Service) VerifyCode(ctx context.Context, in VerifyCodeInput) (store.OneTimeCode, error) {
	a, err := s.BeginVerifyCode(ctx, in)
	if err != nil {
		return store.OneTimeCode{}, err
	}
	otc, err := a.Spend(ctx)
	a.Finish(ctx, err == nil)
	return otc, err
}

// VerifyAttempt is one counted try at a verification code, for a caller
// that spends the code inside a transaction of its own, together with
// what the code proves (the admin API stores a phone number verified and
// spends its code in one write). The try is counted by BeginVerifyCode
// before that transaction, so the count stands when the transaction rolls
// back; Spend runs inside it; Finish audits the outcome after it.
type VerifyAttempt struct {
	s        *Service
	in       VerifyCodeInput
	code     string
	attempts int
	otc      store.OneTimeCode
	reason   string // why the last Spend refused the code; "" when it did not
}

// BeginVerifyCode counts one try at the code of in.BindingID: at most
// MaxAttempts per binding, after which even the right code is ErrLocked
// (it matches ErrInvalidCode) until a CodeTTL window has passed. A
// malformed code is ErrInvalidCode. Both refusals are audited at once. Call
// it outside the transaction that spends the code.
func (s *Service) BeginVerifyCode(ctx context.Context, in VerifyCodeInput) (*VerifyAttempt, error) {
	n, err := s.Store.HitCounter(ctx, "2fa:verify-attempt:"+in.BindingID, ttlOf(in.purpose()), s.now())
	if err != nil {
		return nil, fmt.Errorf("count verification attempts: %w", err)
	}
	a := &VerifyAttempt{s: s, in: in, attempts: n}
	if n > MaxAttempts {
		a.reason = reasonLocked
		a.Finish(ctx, false)
		return nil, ErrLocked
	}
	code, kind := normalize(in.Code)
	if kind != kindDigits || in.BindingID == "" {
		a.reason = reasonMalformed
		a.Finish(ctx, false)
		return nil, ErrInvalidCode
	}
	a.code = code
	return a, nil
}

// Spend marks the code used, in ctx's transaction when there is one, and
// returns its record. A wrong, expired or used code, or one sent for
// another user, is ErrInvalidCode. It audits nothing: Finish does, once
// the caller's transaction has ended. Spend may run again when the
// caller retries its transaction.
func (a *VerifyAttempt) Spend(ctx context.Context) (store.OneTimeCode, error) {
	a.reason, a.otc = "", store.OneTimeCode{}
	s, in := a.s, a.in
	otc, err := s.Store.ConsumeOneTimeCode(ctx, in.BindingID, s.oneTimeHash(in.purpose(), in.BindingID, a.code), s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.reason = reasonWrong
		return store.OneTimeCode{}, ErrInvalidCode
	case err != nil:
		return store.OneTimeCode{}, fmt.Errorf("consume verification code: %w", err)
	case otc.UserID != in.UserID && in.purpose() != PurposeReset:
		a.reason = reasonWrong
		return store.OneTimeCode{}, ErrInvalidCode
	}
	a.otc = otc
	return otc, nil
}

// Finish records the outcome in the audit log: a refusal of the code as
// two_factor.failure, and, when spent is true (the code was spent and the
// caller's transaction committed), two_factor.success. A try that ended for
// another reason (the caller's write failed) records nothing. Call it with
// a ctx outside the caller's transaction.
func (a *VerifyAttempt) Finish(ctx context.Context, spent bool) {
	s, in := a.s, a.in
	switch {
	case a.reason != "":
		s.record(ctx, audit.TwoFactorFailure, in.UserID, in.Meta, map[string]string{
			"reason": a.reason, "purpose": in.purpose(), "attempts": strconv.Itoa(a.attempts),
		})
	case spent && a.otc.ID != "":
		s.record(ctx, audit.TwoFactorSuccess, a.otc.UserID, in.Meta, map[string]string{
			"purpose": in.purpose(), "channel": a.otc.Channel, "destination": MaskDestination(a.otc.Destination),
		})
	}
}

// EnableCodeInput turns on SMS or e-mail codes as the second factor.
type EnableCodeInput struct {
	UserID           string
	Method           string // sms | email
	Webhook          notify.Webhook
	CurrentSessionID string
	// CurrentTokenFamily: see ConfirmInput.
	CurrentTokenFamily string
	Meta
}

// EnableCodeMethod enables sms or e-mail codes to the user's verified phone
// number or e-mail address and returns 10 recovery codes once. ErrUnverified
// when that destination is missing or unverified, ErrNoWebhook when nothing
// could deliver the codes, ErrAlreadyEnabled when a factor is on.
func (s *Service) EnableCodeMethod(ctx context.Context, in EnableCodeInput) ([]string, error) {
	if _, byMail := s.mailFor(in.Method, in.Webhook); !byMail && in.Webhook.Endpoint == "" {
		return nil, ErrNoWebhook
	}
	u, err := s.Store.GetUser(ctx, in.UserID)
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", in.UserID, err)
	}
	var dest string
	switch in.Method {
	case MethodSMS:
		if u.PhoneNumber == "" || !u.PhoneVerified {
			return nil, ErrUnverified
		}
		dest = u.PhoneNumber
	case MethodEmail:
		if u.Email == "" || !u.EmailVerified {
			return nil, ErrUnverified
		}
		dest = u.Email
	default:
		return nil, fmt.Errorf("%w %q", ErrBadMethod, in.Method)
	}
	codes, err := newRecoveryCodes(RecoveryCodeN)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tf := store.TwoFactor{
		UserID: in.UserID, Method: in.Method, Enabled: true, Destination: dest,
		EnrolledAt: now, UpdatedAt: now,
	}
	if err := s.enable(ctx, tf, codes, in.CurrentSessionID, in.CurrentTokenFamily); err != nil {
		return nil, err
	}
	s.record(ctx, audit.TwoFactorEnabled, in.UserID, in.Meta, map[string]string{
		"method": in.Method, "destination": MaskDestination(dest),
	})
	s.record(ctx, audit.RecoveryCodesIssued, in.UserID, in.Meta, map[string]string{"count": strconv.Itoa(len(codes))})
	return codes, nil
}
