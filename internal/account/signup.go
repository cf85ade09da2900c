package account

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// EventSignUp is the audit event of a new account.
const EventSignUp = "user.sign_up"

// SignUpCodesPerAddress is how many sign-up codes one client address may
// ask for per hour, whatever the destinations, over the JSON API and the
// hosted page together: sign-up is open to anyone, so this bounds the
// messages one address can make Gatehouse send.
const SignUpCodesPerAddress = 20

// Refusals of a sign-up.
var (
	ErrUsernameTaken    = errors.New("the username is taken")
	ErrDestinationTaken = errors.New("another account uses this phone number or e-mail address")
	// ErrPendingSignUp is a pending sign-up that did not open: expired,
	// tampered with or sealed by another key.
	ErrPendingSignUp = errors.New("the sign-up has expired; start again")
)

// SignUps creates the accounts people make for themselves, on the hosted
// page and over the JSON API alike.
type SignUps struct {
	Store     store.Store
	TwoFactor *twofactor.Service
	Audit     *audit.Recorder
	// Sealer seals pending sign-ups of the hosted page (SealPending).
	Sealer *secret.Sealer
	Now    func() time.Time
}

// SpendCodeSend counts a sign-up code asked for from remoteAddr; beyond
// SignUpCodesPerAddress in the hour it is a *ThrottledError.
func (s *SignUps) SpendCodeSend(ctx context.Context, remoteAddr string) error {
	now := s.Now().UTC()
	n, err := s.Store.HitCounter(ctx, "sign-up-code:"+remoteAddr, time.Hour, now)
	if err != nil {
		return fmt.Errorf("count sign-up codes: %w", err)
	}
	if n > SignUpCodesPerAddress {
		return &ThrottledError{Until: windowEnd(now, time.Hour), Now: now}
	}
	return nil
}

// PendingSignUp is a hosted e-mail sign-up waiting for its code. No row
// exists until the address is proven, so the page carries it, sealed:
// the address and the new password's hash, never the password.
type PendingSignUp struct {
	Email        string `json:"e"`
	PasswordHash string `json:"h"`
	ExpiresAt    int64  `json:"x"` // Unix seconds
}

// pendingAD binds a sealed pending sign-up to its use.
var pendingAD = []byte("gatehouse pending sign-up v1")

// SealPending returns p as an opaque, authenticated token.
func (s *SignUps) SealPending(p PendingSignUp) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encode pending sign-up: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.Sealer.Seal(b, pendingAD)), nil
}

// OpenPending reverses SealPending; an expired or tampered token is
// ErrPendingSignUp.
func (s *SignUps) OpenPending(token string) (PendingSignUp, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(token) > 4096 {
		return PendingSignUp{}, ErrPendingSignUp
	}
	b, err := s.Sealer.Open(raw, pendingAD)
	if err != nil {
		return PendingSignUp{}, ErrPendingSignUp
	}
	var p PendingSignUp
	if json.Unmarshal(b, &p) != nil || p.Email == "" || s.Now().Unix() > p.ExpiresAt {
		return PendingSignUp{}, ErrPendingSignUp
	}
	return p, nil
}

// NewAccount is a sign-up whose destination was proven (or, for an
// e-mail address under signUp.verifyEmail false, is taken as typed).
type NewAccount struct {
	User         resource.User
	PasswordHash string // resource.HashWriteOnly's
	Channel      string // sms | email: the destination the sign-up gave
	Destination  string
	// Method is the AuthConfig's twoFactor.defaultMethod: sms and email
	// turn codes on at once (recovery codes are returned), totp makes
	// enrolment due at the first sign-in, "" leaves two-step off.
	Method  string
	Webhook notify.Webhook
	twofactor.Meta
}

// Create writes the new account and its second factor in one
// transaction. A taken id is ErrUsernameTaken, a taken destination
// ErrDestinationTaken; nothing is written then.
func (s *SignUps) Create(ctx context.Context, in NewAccount) (store.User, []string, error) {
	switch _, err := s.Store.GetUser(ctx, in.User.ID); {
	case err == nil:
		return store.User{}, nil, ErrUsernameTaken
	case !errors.Is(err, store.ErrNotFound):
		return store.User{}, nil, fmt.Errorf("get user %q: %w", in.User.ID, err)
	}
	if taken, err := resource.DestinationTakenByOther(ctx, s.Store, in.Channel, in.Destination, ""); err != nil {
		return store.User{}, nil, err
	} else if taken {
		return store.User{}, nil, ErrDestinationTaken
	}
	rec, err := resource.ToStoreUser(in.User, in.PasswordHash, nil)
	if err != nil {
		return store.User{}, nil, err
	}
	var codes []string
	var created store.User
	err = s.Store.InTx(ctx, func(ctx context.Context) error {
		out, isNew, err := s.Store.PutUser(ctx, rec, 0)
		switch {
		case errors.Is(err, store.ErrConflict):
			return ErrDestinationTaken // the e-mail address, taken meanwhile
		case err != nil:
			return fmt.Errorf("create user %q: %w", rec.ID, err)
		case !isNew:
			return ErrUsernameTaken // created meanwhile; the rollback keeps theirs
		}
		created = out
		switch in.Method {
		case twofactor.MethodSMS, twofactor.MethodEmail:
			codes, err = s.TwoFactor.EnableCodeMethod(ctx, twofactor.EnableCodeInput{
				UserID: out.ID, Method: in.Method, Webhook: in.Webhook, Meta: in.Meta,
			})
			return err
		case twofactor.MethodTOTP:
			if err := s.Store.PutTwoFactor(ctx, resource.TOTPEnrolmentMarker(out.ID, s.Now().UTC())); err != nil {
				return fmt.Errorf("mark totp enrolment of %q: %w", out.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return store.User{}, nil, err
	}
	if s.Audit != nil {
		_ = s.Audit.Record(ctx, store.AuditEvent{Type: EventSignUp, UserID: created.ID, ClientID: in.ClientID,
			RemoteAddr: in.RemoteAddr, RequestID: in.RequestID,
			Detail: map[string]string{"channel": in.Channel, "destination": twofactor.MaskDestination(in.Destination), "two_factor": in.Method}})
	}
	return created, codes, nil
}
