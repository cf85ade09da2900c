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

// ConfirmInput finishes a TOTP enrolment.
type ConfirmInput struct {
	UserID    string
	Secret    string // the pending secret (OpenPending)
	Code      string // the first code from the user's app
	PastSteps int
	// CurrentSessionID is the browser session that enrols: it stays signed
	// in, every other session of the user ends. "" ends them all.
	CurrentSessionID string
	// CurrentTokenFamily is the request id of the access token that
	// enrols (JSON API): its family stays valid, every other token of the
	// user is deactivated. "" deactivates them all.
	CurrentTokenFamily string
	Meta
}

// ConfirmTOTP enables TOTP when the code matches the pending secret: the
// secret is stored sealed with the user id as associated data, the step of
// the code is recorded as used, and 10 recovery codes are generated. The
// codes are returned once, formatted for display; only keyed hashes are
// kept. ErrInvalidCode for a wrong or malformed code (the caller keeps the
// pending secret and asks again), ErrAlreadyEnabled when a factor is on.
func (s *Service) ConfirmTOTP(ctx context.Context, in ConfirmInput) ([]string, error) {
	if !validSecret(in.Secret) {
		return nil, ErrPendingExpired
	}
	switch tf, err := s.Store.GetTwoFactor(ctx, in.UserID); {
	case err == nil && tf.Enabled:
		return nil, ErrAlreadyEnabled
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("get second factor of %q: %w", in.UserID, err)
	}
	now := s.now()
	code, kind := normalize(in.Code)
	if kind != kindDigits {
		return nil, ErrInvalidCode
	}
	step, ok, err := matchStep(in.Secret, code, now, min(max(in.PastSteps, 0), MaxPastSteps), -1<<62)
	if err != nil {
		return nil, err
	}
	if !ok {
		s.logger().InfoContext(ctx, "totp enrolment code did not match", "user", in.UserID, "request_id", in.RequestID)
		return nil, ErrInvalidCode
	}
	codes, err := newRecoveryCodes(RecoveryCodeN)
	if err != nil {
		return nil, err
	}
	tf := store.TwoFactor{
		UserID:     in.UserID,
		Method:     MethodTOTP,
		Enabled:    true,
		Secret:     s.Sealer.Seal([]byte(in.Secret), secretAD(in.UserID)),
		LastStep:   step,
		EnrolledAt: now,
		UpdatedAt:  now,
	}
	if err := s.enable(ctx, tf, codes, in.CurrentSessionID, in.CurrentTokenFamily); err != nil {
		return nil, err
	}
	s.record(ctx, audit.TwoFactorEnabled, in.UserID, in.Meta, map[string]string{"method": MethodTOTP})
	s.record(ctx, audit.RecoveryCodesIssued, in.UserID, in.Meta, map[string]string{"count": strconv.Itoa(len(codes))})
	return codes, nil
}

// enable stores a factor with fresh recovery codes and ends the user's other
// sessions, all or nothing.
func (s *Service) enable(ctx context.Context, tf store.TwoFactor, codes []string, currentSessionID, currentTokenFamily string) error {
	err := s.Store.InTx(ctx, func(ctx context.Context) error {
		// The write itself refuses to replace an enabled factor, so of two
		// confirmations racing each other the first wins and its secret stays.
		if err := s.Store.EnableTwoFactor(ctx, tf); errors.Is(err, store.ErrConflict) {
			return ErrAlreadyEnabled
		} else if err != nil {
			return fmt.Errorf("store second factor: %w", err)
		}
		if err := s.Store.ReplaceRecoveryCodes(ctx, tf.UserID, s.recoveryHashes(tf.UserID, codes)); err != nil {
			return fmt.Errorf("store recovery codes: %w", err)
		}
		if err := s.Store.DeleteBrowserSessionsByUser(ctx, tf.UserID, currentSessionID); err != nil {
			return fmt.Errorf("end other sessions: %w", err)
		}
		// Tokens got with the password alone end too, but the caller's.
		if err := s.Store.DeactivateOtherOAuthRequests(ctx, tf.UserID, currentTokenFamily); err != nil {
			return fmt.Errorf("deactivate tokens: %w", err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrAlreadyEnabled) {
		return fmt.Errorf("enable %s for %q: %w", tf.Method, tf.UserID, err)
	}
	return err
}

// Disable turns the user's second factor off after checking a current code
// or recovery code (v goes through Verify, with its lockout). The secret and
// recovery codes are deleted and every other session of the user ends.
// currentTokenFamily, when not "", is the request id of the access token
// that asks (JSON API): its family stays valid.
func (s *Service) Disable(ctx context.Context, v VerifyInput, currentSessionID string, currentTokenFamily ...string) error {
	v.AllowRecovery = true
	res, err := s.Verify(ctx, v)
	if err != nil {
		return err
	}
	keep := ""
	if len(currentTokenFamily) > 0 {
		keep = currentTokenFamily[0]
	}
	if err := s.remove(ctx, v.UserID, currentSessionID, keep); err != nil {
		return err
	}
	s.record(ctx, audit.TwoFactorDisabled, v.UserID, v.Meta, map[string]string{"proven_by": res.Method})
	return nil
}

// Reset is the administrator's disable: no code, every session of the user
// ends. A user without a factor is left as is.
func (s *Service) Reset(ctx context.Context, userID string, m Meta) error {
	if _, err := s.Store.GetTwoFactor(ctx, userID); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("get second factor of %q: %w", userID, err)
	}
	if err := s.remove(ctx, userID, "", ""); err != nil {
		return err
	}
	s.record(ctx, audit.TwoFactorReset, userID, m, nil)
	return nil
}

func (s *Service) remove(ctx context.Context, userID, keepSessionID, keepTokenFamily string) error {
	return s.Store.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.DeleteTwoFactor(ctx, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete second factor of %q: %w", userID, err)
		}
		if err := s.Store.DeleteBrowserSessionsByUser(ctx, userID, keepSessionID); err != nil {
			return fmt.Errorf("end sessions of %q: %w", userID, err)
		}
		if err := s.Store.DeactivateOtherOAuthRequests(ctx, userID, keepTokenFamily); err != nil {
			return fmt.Errorf("deactivate tokens of %q: %w", userID, err)
		}
		// A remembered browser stood in for the factor that is gone.
		n, err := s.Store.DeleteRememberedDevices(ctx, userID)
		if err != nil {
			return fmt.Errorf("forget remembered devices of %q: %w", userID, err)
		}
		if n > 0 {
			s.record(ctx, audit.DeviceRevoked, userID, Meta{}, map[string]string{"device": "all", "count": strconv.FormatInt(n, 10), "by": "two_factor_removed"})
		}
		return nil
	})
}

// RegenerateRecoveryCodes replaces the user's recovery codes after checking
// a current code or a recovery code, and returns the new ones once.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, v VerifyInput) ([]string, error) {
	v.AllowRecovery = true
	if _, err := s.Verify(ctx, v); err != nil {
		return nil, err
	}
	codes, err := newRecoveryCodes(RecoveryCodeN)
	if err != nil {
		return nil, err
	}
	if err := s.Store.ReplaceRecoveryCodes(ctx, v.UserID, s.recoveryHashes(v.UserID, codes)); err != nil {
		return nil, fmt.Errorf("replace recovery codes of %q: %w", v.UserID, err)
	}
	s.record(ctx, audit.RecoveryCodesIssued, v.UserID, v.Meta, map[string]string{"count": strconv.Itoa(len(codes))})
	return codes, nil
}

// Status is what the settings page and the admin API show. It never
// carries the secret.
type Status struct {
	Enabled                bool
	Method                 string
	Destination            string // sms/e-mail factors
	EnrolledAt             time.Time
	RecoveryCodesRemaining int
	LockedUntil            time.Time // zero unless locked now
}

// Status reports a user's second factor; a user without one has the zero Status.
func (s *Service) Status(ctx context.Context, userID string) (Status, error) {
	st, found, err := s.factorStatus(ctx, userID)
	if err != nil || !found {
		return st, err
	}
	n, err := s.Store.CountRecoveryCodes(ctx, userID)
	if err != nil {
		return Status{}, fmt.Errorf("count recovery codes of %q: %w", userID, err)
	}
	st.RecoveryCodesRemaining = n
	return st, nil
}

// Method is Status without the recovery-code count (RecoveryCodesRemaining
// is left 0): one read, for the code prompt, which only names the method
// and where the code went.
func (s *Service) Method(ctx context.Context, userID string) (Status, error) {
	st, _, err := s.factorStatus(ctx, userID)
	return st, err
}

func (s *Service) factorStatus(ctx context.Context, userID string) (Status, bool, error) {
	tf, err := s.Store.GetTwoFactor(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("get second factor of %q: %w", userID, err)
	}
	st := Status{
		Enabled:     tf.Enabled,
		Method:      tf.Method,
		Destination: tf.Destination,
		EnrolledAt:  tf.EnrolledAt,
	}
	if tf.LockedUntil.After(s.now()) {
		st.LockedUntil = tf.LockedUntil
	}
	return st, true, nil
}
