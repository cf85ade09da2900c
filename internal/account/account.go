package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// ErrInvalidCredentials is the one answer for an unknown user, a wrong
// password, an inactive account and a throttled account or address, so a
// caller cannot tell them apart.
var ErrInvalidCredentials = errors.New("invalid username or password")

// Throttle limits failed passwords in fixed windows.
type Throttle struct {
	PerAccount int           // failures per account per Window
	PerAddress int           // failures per client address per Window
	Window     time.Duration //
}

// DefaultThrottle: 10 failures per account and 50 per address in 15 minutes.
var DefaultThrottle = Throttle{PerAccount: 10, PerAddress: 50, Window: 15 * time.Minute}

// Authenticator verifies passwords.
type Authenticator struct {
	Store    store.Store
	Hasher   *secret.PasswordHasher
	Audit    *audit.Recorder
	Throttle Throttle
	Now      func() time.Time
}

// Attempt describes one password attempt.
type Attempt struct {
	Login      string
	Password   string
	RemoteAddr string
	ClientID   string
	RequestID  string
}

func accountKey(id string) string       { return "pwfail:user:" + id }
func addressKey(ip string) string       { return "pwfail:ip:" + ip }
func (a *Authenticator) now() time.Time { return a.Now().UTC() }

// CheckPassword returns the user when the password is right and neither the
// account nor the address is throttled; otherwise ErrInvalidCredentials (or a
// wrapped storage error, which callers show as "try again later").
func (a *Authenticator) CheckPassword(ctx context.Context, at Attempt) (store.User, error) {
	now := a.now()
	user, err := a.Store.FindUser(ctx, at.Login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("find user: %w", err)
	}
	known := err == nil
	subject := at.Login
	if known {
		subject = user.ID
	}

	// Both throttles in one read. accountFailures also tells whether a
	// success has anything to reset.
	throttled := false
	accountFailures := 0
	var keys []string
	byAddress := at.RemoteAddr != "" && a.Throttle.PerAddress > 0
	if byAddress {
		keys = append(keys, addressKey(at.RemoteAddr))
	}
	if a.Throttle.PerAccount > 0 {
		keys = append(keys, accountKey(subject))
	}
	if len(keys) > 0 {
		counts, err := a.Store.GetCounters(ctx, keys, a.Throttle.Window, now)
		if err != nil {
			return store.User{}, fmt.Errorf("read throttles: %w", err)
		}
		if byAddress {
			throttled = counts[0] >= a.Throttle.PerAddress
			counts = counts[1:]
		}
		if a.Throttle.PerAccount > 0 {
			accountFailures = counts[0]
			throttled = throttled || accountFailures >= a.Throttle.PerAccount
		}
	}

	// Always pay for one hash, so unknown, throttled and wrong look alike in time.
	hash := ""
	if known && !user.Inactive && !throttled {
		hash = user.PasswordHash
	}
	ok, err := a.Hasher.Verify(ctx, hash, at.Password)
	if err != nil && !errors.Is(err, secret.ErrMalformedHash) {
		return store.User{}, fmt.Errorf("verify password: %w", err)
	}
	if ok {
		// Reset only what counted: a delete that finds nothing is still a
		// round trip, on every successful login.
		if accountFailures > 0 {
			if err := a.Store.ResetCounter(ctx, accountKey(subject)); err != nil {
				return store.User{}, fmt.Errorf("reset throttle: %w", err)
			}
		}
		a.record(ctx, audit.LoginSuccess, at, user.ID, "")
		return user, nil
	}

	if !throttled {
		if _, err := a.Store.HitCounter(ctx, accountKey(subject), a.Throttle.Window, now); err != nil {
			return store.User{}, fmt.Errorf("count failure: %w", err)
		}
		if at.RemoteAddr != "" {
			if _, err := a.Store.HitCounter(ctx, addressKey(at.RemoteAddr), a.Throttle.Window, now); err != nil {
				return store.User{}, fmt.Errorf("count failure: %w", err)
			}
		}
	}
	reason := "wrong_password"
	switch {
	case throttled:
		reason = "throttled"
	case !known:
		reason = "unknown_user"
	case user.Inactive:
		reason = "inactive"
	}
	userID := ""
	if known {
		userID = user.ID
	}
	kind := audit.LoginFailure
	if throttled {
		kind = audit.LoginThrottled
	}
	a.record(ctx, kind, at, userID, reason)
	return store.User{}, ErrInvalidCredentials
}

func (a *Authenticator) record(ctx context.Context, kind string, at Attempt, userID, reason string) {
	if a.Audit == nil {
		return
	}
	e := store.AuditEvent{Type: kind, UserID: userID, ClientID: at.ClientID, RemoteAddr: at.RemoteAddr, RequestID: at.RequestID}
	if reason != "" {
		e.Detail = map[string]string{"reason": reason}
	}
	_ = a.Audit.Record(ctx, e) // Record logs its own failure; a login does not fail on audit.
}
