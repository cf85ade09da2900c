package signin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
)

// Enrolment grace: a policy that requires a second factor may give a user
// without one AuthConfig twoFactor.gracePeriod.days to set it up, counted
// from the first sign-in where the requirement applied to that user (stored
// per user, the same on every process). During the grace the enrolment is
// offered and may be skipped; after it, it is owed before anything is
// issued. Only the policy's requirement has a grace: a level asked for
// (acr_values, required_acr) or an account created with a TOTP enrolment
// due does not.

// ErrGraceOver: the enrolment can no longer be skipped.
var ErrGraceOver = errors.New("the grace period for setting up a second factor is over")

// grace reports whether s's user may still skip the enrolment the policy
// requires, and until when; asked is the level the request or client asks
// for besides the policy. The first call that finds the requirement
// applying stores its start.
func (e *Engine) grace(ctx context.Context, s *SignIn, asked string) (time.Time, bool, error) {
	g := s.Policy.EnrolmentGrace()
	if g <= 0 || !s.Policy.SecondFactorRequired() || s.TwoFactor.Enabled || resource.TOTPEnrolmentDue(s.TwoFactor) ||
		Level(asked) >= Level(ACRMFA) {
		return time.Time{}, false, nil
	}
	now := e.now()
	since, err := e.Store.MarkTwoFactorRequired(ctx, s.User.ID, now)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("enrolment grace of %q: %w", s.User.ID, err)
	}
	ends := since.Add(g).UTC()
	return ends, now.Before(ends), nil
}

// Grace reports whether the enrolment s owes may still be skipped, and
// until when.
func (e *Engine) Grace(ctx context.Context, s *SignIn) (time.Time, bool, error) {
	return e.grace(ctx, s, s.RequiredACR)
}

// SkipEnrolment finishes s with the password alone while its grace lasts
// (ErrGraceOver after), completing its ticket once when it has one.
func (e *Engine) SkipEnrolment(ctx context.Context, s *SignIn) (Result, error) {
	ends, ok, err := e.Grace(ctx, s)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, ErrGraceOver
	}
	if err := e.complete(ctx, s); err != nil {
		return Result{}, err
	}
	e.record(ctx, audit.EnrolmentSkipped, s, map[string]string{"grace_ends_at": ends.Format(time.RFC3339)})
	return e.result(s, "", nil), nil
}
