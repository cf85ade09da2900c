package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Event types. Keep them stable: operators filter on them.
const (
	LoginSuccess   = "login.success"
	LoginFailure   = "login.failure"
	LoginThrottled = "login.throttled"
	// LoginPausedNotice: the owner was told that wrong passwords paused
	// sign-in from an address (detail: address, via, delivered).
	LoginPausedNotice = "login.paused_notice"
	// LoginStepUp: a signed-in session proved one more factor (detail: amr).
	LoginStepUp         = "login.step_up"
	Logout              = "logout"
	TwoFactorEnabled    = "two_factor.enabled"
	TwoFactorDisabled   = "two_factor.disabled"
	TwoFactorReset      = "two_factor.reset"
	TwoFactorSuccess    = "two_factor.success"
	TwoFactorFailure    = "two_factor.failure"
	TwoFactorReused     = "two_factor.code_reused"
	TwoFactorLockout    = "two_factor.lockout"
	RecoveryCodeUsed    = "two_factor.recovery_code_used"
	RecoveryCodesIssued = "two_factor.recovery_codes_issued"
	CodeSent            = "two_factor.code_sent"
	WebhookFailure      = "webhook.failure"
	MailFailure         = "mail.failure"
	DestinationVerified = "user.destination_verified" // a phone number or e-mail address proven by a code
	AdminWrite          = "admin.write"
	AdminDelete         = "admin.delete"
	TokenReuse          = "token.reuse_detected"
	// Remembered devices (detail: device, the record's id; never its token).
	DeviceRemembered = "two_factor.device_remembered"
	DeviceUsed       = "two_factor.device_used" // a remembered browser skipped the second factor
	DeviceRevoked    = "two_factor.device_revoked"
	// EnrolmentSkipped: a required second factor was not set up, within
	// its grace period (detail: grace_ends_at).
	EnrolmentSkipped = "two_factor.enrolment_skipped"
)

// Recorder stores and logs audit events.
type Recorder struct {
	Store  store.Store
	Logger *slog.Logger
	Now    func() time.Time
	// Observe, when set, sees every event as it is recorded, stored or
	// not (the server counts them as metrics). It must be quick.
	Observe func(store.AuditEvent)
}

// Record stores e (filling ID and Time) and logs it. A storage failure is
// logged and returned; callers on a login path usually carry on regardless.
func (r *Recorder) Record(ctx context.Context, e store.AuditEvent) error {
	if e.ID == "" {
		e.ID = secret.RandomToken(12)
	}
	if e.RequestID == "" {
		e.RequestID = RequestID(ctx)
	}
	if e.RemoteAddr == "" {
		e.RemoteAddr = RemoteAddr(ctx)
	}
	if e.Time.IsZero() {
		e.Time = r.Now().UTC()
	}
	attrs := []any{"event", e.Type, "audit_id", e.ID}
	if e.UserID != "" {
		attrs = append(attrs, "user", e.UserID)
	}
	if e.ClientID != "" {
		attrs = append(attrs, "client", e.ClientID)
	}
	if e.RemoteAddr != "" {
		attrs = append(attrs, "remote", e.RemoteAddr)
	}
	if e.RequestID != "" {
		attrs = append(attrs, "request_id", e.RequestID)
	}
	for k, v := range e.Detail {
		attrs = append(attrs, k, v)
	}
	r.Logger.InfoContext(ctx, "audit", attrs...)
	if r.Observe != nil {
		r.Observe(e)
	}
	if err := r.Store.AppendAudit(ctx, e); err != nil {
		r.Logger.ErrorContext(ctx, "store audit event", "event", e.Type, "err", err)
		return err
	}
	return nil
}
