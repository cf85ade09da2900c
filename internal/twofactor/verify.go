package twofactor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// VerifyInput is one submitted second-factor code.
type VerifyInput struct {
	UserID string
	Code   string // as typed: spaces and dashes are ignored
	// PastSteps is how many 30-second steps before the current one a TOTP
	// code may come from (AuthConfig validPastTokensCount; see PastSteps).
	// One future step is always accepted, nothing outside the window.
	PastSteps int
	// AllowRecovery accepts a recovery code in place of the factor's code.
	AllowRecovery bool
	// BindingID names the login attempt an SMS/e-mail code was sent for
	// (SendLoginCode's binding); unused for TOTP.
	BindingID string
	// Factor, when set, is the user's record as the caller read it moments
	// ago (the sign-in engine has it), which saves reading it again; the
	// attempt reservation reads the counters afresh either way.
	Factor *store.TwoFactor
	Meta
}

// Result says how a second factor was proven.
type Result struct {
	Method string   // totp | sms | email | recovery
	AMR    []string // authentication method references to add: otp, mfa
	// RecoveryCodesRemaining is the number of unused recovery codes after a
	// recovery code was spent; 0 for the other methods.
	RecoveryCodesRemaining int
}

// Failure reasons, in audit details.
const (
	reasonMalformed = "malformed"
	reasonWrong     = "wrong_code"
	reasonReused    = "reused"
	reasonLocked    = "locked"
)

// Verify checks a second-factor code for a user whose factor is enabled.
//
// Before anything is checked an attempt is reserved in the store: at most
// MaxAttempts run between two successes however many arrive at once, and the
// attempt that reaches the limit and fails locks the factor for 5 minutes,
// doubling with every lockout up to an hour. During a lock every code, the
// right one too, is refused. If the attempt holding the last reservation
// never settles it (its process died before locking or clearing), the store
// treats the reservation as the lock it would have set, counted from the
// reservation, so the factor frees itself without an admin. A TOTP code is
// accepted once: its step must be newer than the last accepted step, which
// the store advances atomically. A replayed code (a step already used) is
// refused without counting towards the lockout.
//
// Every refusal is ErrInvalidCode (ErrCodeReused and ErrLocked match it);
// ErrNotEnabled when the user has no enabled factor; other errors are
// storage failures.
func (s *Service) Verify(ctx context.Context, in VerifyInput) (Result, error) {
	return s.verify(ctx, in, nil)
}

// verify is Verify where an SMS/e-mail code may also have been sent under
// one of the bindings in alt; they all share the one reserved attempt.
func (s *Service) verify(ctx context.Context, in VerifyInput, alt []string) (Result, error) {
	var tf store.TwoFactor
	var err error
	if in.Factor != nil && in.Factor.UserID == in.UserID {
		tf = *in.Factor
	} else {
		tf, err = s.Store.GetTwoFactor(ctx, in.UserID)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && !tf.Enabled) {
		return Result{}, ErrNotEnabled
	}
	if err != nil {
		return Result{}, fmt.Errorf("get second factor of %q: %w", in.UserID, err)
	}
	return s.guard(ctx, tf, tf.Method, in.Meta, func(now time.Time) (Result, string, error) {
		return s.check(ctx, tf, in, alt, now)
	})
}

// Guard runs check, a second factor of a deployment's own (any answer the
// built-in methods do not know), under the same attempt reservation and
// lockout as Verify: the user's one counter, shared by every factor and
// every surface. check returns an error matching ErrInvalidCode for a
// refused answer; ErrCodeReused for an answer that was valid once, which is
// refused without counting towards the lockout. A user with no
// second-factor record gets an empty one to count on.
func (s *Service) Guard(ctx context.Context, userID, method string, m Meta, check func(ctx context.Context) (Result, error)) (Result, error) {
	tf, err := s.Store.GetTwoFactor(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		if err = s.Store.EnsureTwoFactor(ctx, userID); err == nil {
			tf, err = s.Store.GetTwoFactor(ctx, userID)
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("get second factor of %q: %w", userID, err)
	}
	return s.guard(ctx, tf, method, m, func(time.Time) (Result, string, error) {
		res, err := check(ctx)
		var ce *codeError
		switch {
		case errors.As(err, &ce):
			return Result{}, ce.reason, nil
		case errors.Is(err, ErrInvalidCode):
			return Result{}, reasonWrong, nil
		case err != nil:
			return Result{}, "", err
		}
		if res.Method == "" {
			res.Method = method
		}
		return res, "", nil
	})
}

// guard reserves an attempt for tf's user, runs check (a non-empty reason
// is a refusal), and settles the reservation: cleared on success, a lock
// when the refusal was the last attempt allowed.
func (s *Service) guard(ctx context.Context, tf store.TwoFactor, method string, m Meta, check func(now time.Time) (Result, string, error)) (Result, error) {
	now := s.now()
	in := VerifyInput{UserID: tf.UserID, Meta: m}
	// The stale-reservation lock is the one this attempt would set if it
	// were the last and failed; minutes, far longer than any check takes.
	att, err := s.Store.ReserveFactorAttempt(ctx, tf.UserID, now, MaxAttempts, lockoutFor(tf.Lockouts))
	if err != nil {
		return Result{}, fmt.Errorf("reserve code attempt for %q: %w", tf.UserID, err)
	}
	if !att.Allowed {
		s.record(ctx, audit.TwoFactorFailure, tf.UserID, m, map[string]string{
			"reason": reasonLocked, "method": method,
		})
		return Result{}, ErrLocked
	}
	res, reason, err := check(now)
	if err != nil {
		// The reservation stands. If it was the last one allowed, lock as
		// for a wrong code: the store would otherwise only free the factor
		// when the stale reservation runs out, and record no lockout.
		if att.Failures >= MaxAttempts {
			if lerr := s.lock(ctx, in, tf, now); lerr != nil {
				s.logger().ErrorContext(ctx, "lock second factor after an error", "user", tf.UserID, "err", lerr)
			}
		}
		return Result{}, err
	}
	if reason != "" {
		return Result{}, s.failed(ctx, in, method, tf, att, reason, now)
	}
	// A TOTP code cleared the failures with the step it advanced (one
	// statement); the other methods settle the reservation here.
	if res.Method != MethodTOTP {
		if err := s.Store.ClearFactorFailures(ctx, tf.UserID); err != nil {
			return Result{}, fmt.Errorf("clear code failures of %q: %w", tf.UserID, err)
		}
	}
	if res.Method == MethodRecovery {
		s.record(ctx, audit.RecoveryCodeUsed, tf.UserID, m, map[string]string{
			"remaining": strconv.Itoa(res.RecoveryCodesRemaining),
		})
	}
	s.record(ctx, audit.TwoFactorSuccess, tf.UserID, m, map[string]string{"method": res.Method})
	return res, nil
}

// check evaluates the code; a non-empty reason is a refusal.
func (s *Service) check(ctx context.Context, tf store.TwoFactor, in VerifyInput, alt []string, now time.Time) (Result, string, error) {
	code, kind := normalize(in.Code)
	switch {
	case kind == kindRecovery && in.AllowRecovery:
		return s.checkRecovery(ctx, in.UserID, code, now)
	case kind != kindDigits:
		return Result{}, reasonMalformed, nil
	}
	switch tf.Method {
	case MethodTOTP:
		secret, err := s.openSecret(tf)
		if err != nil {
			return Result{}, "", err
		}
		step, ok, err := matchStep(secret, code, now, min(max(in.PastSteps, 0), MaxPastSteps), tf.LastStep)
		if err != nil {
			return Result{}, "", err
		}
		if !ok {
			return Result{}, reasonWrong, nil
		}
		// The step advances and the failures clear together; a replay
		// changes neither, and failed gives its reservation back.
		switch err := s.Store.AcceptTOTPStep(ctx, in.UserID, step); {
		case errors.Is(err, store.ErrConflict):
			return Result{}, reasonReused, nil
		case err != nil:
			return Result{}, "", fmt.Errorf("accept totp step of %q: %w", in.UserID, err)
		}
		return Result{Method: MethodTOTP, AMR: []string{"otp", "mfa"}}, "", nil
	case MethodSMS, MethodEmail:
		for _, b := range append([]string{in.BindingID}, alt...) {
			if b == "" {
				continue
			}
			otc, err := s.Store.ConsumeOneTimeCode(ctx, b, s.oneTimeHash(PurposeLogin, b, code), now)
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue
			case err != nil:
				return Result{}, "", fmt.Errorf("consume one-time code: %w", err)
			case otc.UserID != in.UserID:
				return Result{}, reasonWrong, nil
			}
			return Result{Method: tf.Method, AMR: []string{"otp", "mfa"}}, "", nil
		}
		return Result{}, reasonWrong, nil
	}
	return Result{}, "", fmt.Errorf("second factor of %q: %w %q", in.UserID, ErrBadMethod, tf.Method)
}

func (s *Service) checkRecovery(ctx context.Context, userID, code string, now time.Time) (Result, string, error) {
	switch err := s.Store.UseRecoveryCode(ctx, userID, s.recoveryHash(userID, code), now); {
	case errors.Is(err, store.ErrNotFound):
		return Result{}, reasonWrong, nil
	case err != nil:
		return Result{}, "", fmt.Errorf("use recovery code of %q: %w", userID, err)
	}
	left, err := s.Store.CountRecoveryCodes(ctx, userID)
	if err != nil {
		return Result{}, "", fmt.Errorf("count recovery codes of %q: %w", userID, err)
	}
	return Result{Method: MethodRecovery, AMR: []string{"otp", "mfa"}, RecoveryCodesRemaining: left}, "", nil
}

// failed records a refused code and locks the factor when this attempt was
// the last one allowed. The reservation already counted it, committed on
// its own, so a failed login that rolls back nothing else keeps the count.
//
// A replayed code is the exception: it was valid once, so whoever sent it
// knows the factor (often the owner, whose app or browser submitted one
// code several times). It is refused, and its reservation is given back
// instead of counted: replays never lock the owner out, and they buy a
// guesser nothing, since each one takes a reservation while it is checked.
func (s *Service) failed(ctx context.Context, in VerifyInput, method string, tf store.TwoFactor, att store.FactorAttempt, reason string, now time.Time) error {
	if reason == reasonReused {
		failures := att.Failures - 1
		if err := s.Store.ReleaseFactorAttempt(ctx, in.UserID); err != nil {
			// The refusal stands; the attempt stays counted until the
			// next success clears it.
			failures = att.Failures
			s.logger().ErrorContext(ctx, "give back the attempt of a replayed code", "user", in.UserID, "err", err)
		}
		s.record(ctx, audit.TwoFactorReused, in.UserID, in.Meta, map[string]string{
			"reason": reason, "method": method, "failures": strconv.Itoa(max(failures, 0)),
		})
		return ErrCodeReused
	}
	s.record(ctx, audit.TwoFactorFailure, in.UserID, in.Meta, map[string]string{
		"reason": reason, "method": method, "failures": strconv.Itoa(att.Failures),
	})
	if att.Failures >= MaxAttempts {
		if err := s.lock(ctx, in, tf, now); err != nil {
			return err
		}
	}
	return ErrInvalidCode
}

// lock starts a lockout whose length doubles with the lockouts since the
// last success.
func (s *Service) lock(ctx context.Context, in VerifyInput, tf store.TwoFactor, now time.Time) error {
	// Read the lockout count again: the one read before the attempt may
	// predate a lockout that ended meanwhile.
	lockouts := tf.Lockouts
	if cur, err := s.Store.GetTwoFactor(ctx, in.UserID); err == nil {
		lockouts = cur.Lockouts
	}
	until := now.Add(lockoutFor(lockouts))
	if err := s.Store.LockFactor(ctx, in.UserID, until); err != nil {
		return fmt.Errorf("lock second factor of %q: %w", in.UserID, err)
	}
	s.record(ctx, audit.TwoFactorLockout, in.UserID, in.Meta, map[string]string{
		"until": until.Format(time.RFC3339), "lockouts": strconv.Itoa(lockouts + 1),
	})
	return nil
}
