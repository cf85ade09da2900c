package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// ErrInvalidCredentials is the one answer for an unknown user and a wrong
// password (an inactive account's too), so a caller cannot tell them apart.
// A throttled attempt is a *ThrottledError, and the right password of an
// inactive account ErrAccountDisabled; both match it too.
var ErrInvalidCredentials = errors.New("invalid username or password")

// ErrAccountDisabled answers the right password of an inactive account, so
// that its owner is told why they cannot sign in; a wrong password for it
// is ErrInvalidCredentials like any other, so only someone who knows the
// password learns that the account exists and is disabled. It matches
// ErrInvalidCredentials: a caller that does not tell them apart refuses.
var ErrAccountDisabled error = disabledError{}

type disabledError struct{}

func (disabledError) Error() string        { return "account disabled" }
func (disabledError) Is(target error) bool { return target == ErrInvalidCredentials }

// Throttle limits failed passwords in fixed windows. Failures count per
// (account, address) and per address, never per account alone: whoever
// guesses from one address cannot lock the owner out elsewhere.
type Throttle struct {
	PerAccount int           // failures per account from one client address per Window
	PerAddress int           // failures per client address, over all accounts, per Window
	Window     time.Duration //
}

// DefaultThrottle: 10 failures per account and address and 50 per address
// in 15 minutes.
var DefaultThrottle = Throttle{PerAccount: 10, PerAddress: 50, Window: 15 * time.Minute}

// Authenticator verifies passwords.
type Authenticator struct {
	Store    store.Store
	Hasher   *secret.PasswordHasher
	Audit    *audit.Recorder
	Throttle Throttle
	Now      func() time.Time
	// Paused, when set, is told (in the background) when an attempt's
	// failure pauses sign-in to a known, active account from an address,
	// once per account, address and window: the owner should hear of it
	// from us, not from a locked door.
	Paused func(ctx context.Context, u store.User, at Attempt, failures int, until time.Time)

	notices sync.WaitGroup
}

// WaitForNotices waits for the Paused calls under way (tests, shutdown).
func (a *Authenticator) WaitForNotices() { a.notices.Wait() }

// Attempt describes one password attempt.
type Attempt struct {
	Login      string
	Password   string
	RemoteAddr string
	ClientID   string
	RequestID  string
}

func accountKey(id, ip string) string   { return "pwfail:user:" + id + "|" + ip }
func addressKey(ip string) string       { return "pwfail:ip:" + ip }
func (a *Authenticator) now() time.Time { return a.Now().UTC() }

// CheckPassword returns the user when the password is right. It reserves
// the attempt on both throttles before the hash and gives the reservation
// back on success, so a concurrent burst gets no more checks than the
// limits. Otherwise it returns ErrInvalidCredentials, a *ThrottledError
// (errors.Is ErrThrottled, with the time to wait), or a wrapped storage
// error, which callers show as "try again later".
func (a *Authenticator) CheckPassword(ctx context.Context, at Attempt) (store.User, error) {
	now := a.now()
	// The factors come in the same statement: the sign-in that follows a
	// right password decides from them.
	user, err := a.Store.FindUserWithFactors(ctx, at.Login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("find user: %w", err)
	}
	known := err == nil
	subject := strings.ToLower(at.Login)
	userID := ""
	if known {
		subject, userID = user.ID, user.ID
	}

	var limits []Limit
	if at.RemoteAddr != "" {
		limits = append(limits, Limit{addressKey(at.RemoteAddr), a.Throttle.PerAddress})
	}
	limits = append(limits, Limit{accountKey(subject, at.RemoteAddr), a.Throttle.PerAccount})
	// Always pay for one hash, so unknown and wrong look alike in time. The
	// attempt is reserved once it holds a hashing slot: the attempts queued
	// for one do not count against the address's limit yet.
	hash := ""
	if known {
		hash = user.PasswordHash
	}
	var res Reservation
	ok, err := a.Hasher.VerifyAdmitted(ctx, hash, at.Password, func() (err error) {
		res, err = Reserve(ctx, a.Store, a.Throttle.Window, now, limits...)
		return err
	})
	if errors.Is(err, ErrThrottled) {
		a.record(ctx, audit.LoginThrottled, at, userID, "throttled")
		return store.User{}, err
	}
	if err != nil && !errors.Is(err, secret.ErrMalformedHash) {
		return store.User{}, fmt.Errorf("verify password: %w", err)
	}
	if ok && user.Inactive {
		// Counted like a failure: knowing the password opens nothing.
		a.record(ctx, audit.LoginFailure, at, userID, "inactive")
		return store.User{}, ErrAccountDisabled
	}
	if ok {
		if err := res.Release(ctx); err != nil {
			return store.User{}, err
		}
		// Earlier failures of this account from this address were the
		// owner's: a success forgives them. Only when there are any: a
		// delete that finds nothing is still a round trip.
		if n := res.Hits[len(res.Hits)-1]; n > 1 {
			if err := a.Store.ResetCounter(ctx, accountKey(subject, at.RemoteAddr)); err != nil {
				return store.User{}, fmt.Errorf("reset throttle: %w", err)
			}
		}
		a.record(ctx, audit.LoginSuccess, at, user.ID, "")
		return user, nil
	}

	reason := "wrong_password"
	switch {
	case !known:
		reason = "unknown_user"
	case user.Inactive:
		reason = "inactive"
	}
	a.record(ctx, audit.LoginFailure, at, userID, reason)
	// This failure filled the account's limit from this address: the next
	// attempt from there is paused. Only the failure that reaches the limit
	// exactly says so, so the owner hears once per window.
	if n := res.Hits[len(res.Hits)-1]; known && !user.Inactive && a.Paused != nil && a.Throttle.PerAccount > 0 && n == a.Throttle.PerAccount {
		a.notices.Add(1)
		go func(ctx context.Context) {
			defer a.notices.Done()
			a.Paused(ctx, user, at, n, windowEnd(now, a.Throttle.Window))
		}(context.WithoutCancel(ctx))
	}
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
