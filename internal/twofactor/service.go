package twofactor

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Methods a factor can use, and the name of the recovery-code path.
const (
	MethodTOTP     = "totp"
	MethodSMS      = "sms"
	MethodEmail    = "email"
	MethodRecovery = "recovery"
)

// Limits of the second-factor rules (DESIGN.md §6).
const (
	MaxAttempts      = 5                // wrong codes in a row before a lockout
	LockoutBase      = 5 * time.Minute  // first lockout; doubles each time
	LockoutMax       = time.Hour        // cap of the doubling
	RecoveryCodeN    = 10               // recovery codes per issue
	PendingTTL       = 15 * time.Minute // how long an unconfirmed TOTP secret stays usable
	CodeTTL          = 10 * time.Minute // SMS/e-mail one-time codes
	ResetTTL         = 30 * time.Minute // a forgotten password's code and link
	SendLimit        = 5                // one-time code sends per user and destination per SendWindow
	SendWindow       = time.Hour
	TOTPSendLimit    = 20 // webhook pushes of the current TOTP code per user per SendWindow
	DefaultPastSteps = 1
	MaxPastSteps     = 10
	DefaultIssuer    = "Gatehouse"
)

// The user-facing errors. ErrCodeReused and ErrLocked match ErrInvalidCode and
// read the same, so a caller that shows err.Error() still tells an attacker
// nothing; errors.Is tells them apart for logs and tests.
var (
	ErrInvalidCode          = errors.New("invalid code")
	ErrCodeReused     error = &codeError{"reused"}
	ErrLocked         error = &codeError{"locked"}
	ErrNotEnabled           = errors.New("two-factor authentication is not enabled")
	ErrAlreadyEnabled       = errors.New("two-factor authentication is already enabled")
	ErrPendingExpired       = errors.New("the enrolment has expired; start again")
	ErrTooManySends         = errors.New("too many codes sent; try again later")
	// ErrNothingToSend: the next usable TOTP step is more than one step
	// ahead (a code was just used), so a push would deliver a dead code.
	ErrNothingToSend = errors.New("no usable code to send yet; wait for the next one")
	ErrNoWebhook     = errors.New("no webhook is configured to deliver codes")
	ErrUnverified    = errors.New("the destination is not verified")
	ErrBadMethod     = errors.New("unknown two-factor method")
)

type codeError struct{ reason string }

func (e *codeError) Error() string        { return ErrInvalidCode.Error() }
func (e *codeError) Is(target error) bool { return target == ErrInvalidCode }

// Meta describes the request a call serves, for the audit log.
type Meta struct {
	ClientID   string
	RemoteAddr string
	RequestID  string
}

// Service implements second factors over a Store. All fields but Notifier
// are required; Notifier is needed only for codes sent by webhook.
type Service struct {
	Store store.Store
	// Sealer encrypts TOTP secrets at rest and pending enrolments (key:
	// secret.Derive(master, secret.PurposeAtRest)).
	Sealer *secret.Sealer
	// CodeKey keys the hashes of recovery and one-time codes (key:
	// secret.Derive(master, secret.PurposeCodeMAC)).
	CodeKey  []byte
	Audit    *audit.Recorder
	Notifier *notify.Notifier
	// Mailer sends e-mail codes over SMTP when a mail server applies: the
	// AuthConfig's (Webhook.Mail) or else SMTP, the server's. Optional.
	Mailer *notify.Mailer
	SMTP   notify.SMTP
	// Mail renders the e-mails (templates.MailFS); required with Mailer.
	Mail   *notify.MailTemplates
	Logger *slog.Logger
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// record stores an audit event. Its failure is logged by the recorder and
// does not change the outcome of the operation it describes.
func (s *Service) record(ctx context.Context, typ, userID string, m Meta, detail map[string]string) {
	if s.Audit == nil {
		return
	}
	_ = s.Audit.Record(ctx, store.AuditEvent{
		Type:       typ,
		UserID:     userID,
		ClientID:   m.ClientID,
		RemoteAddr: m.RemoteAddr,
		RequestID:  m.RequestID,
		Detail:     detail,
	})
}

// PastSteps turns an AuthConfig's validPastTokensCount into the window
// Verify uses: 1 when unset, clamped to [0, MaxPastSteps].
func PastSteps(validPastTokensCount *int) int {
	if validPastTokensCount == nil {
		return DefaultPastSteps
	}
	return min(max(*validPastTokensCount, 0), MaxPastSteps)
}

// lockoutFor is how long the lockouts-th lockout (counting from 0) lasts.
func lockoutFor(lockouts int) time.Duration {
	d := LockoutBase
	for range max(lockouts, 0) {
		d *= 2
		if d >= LockoutMax {
			return LockoutMax
		}
	}
	return d
}
