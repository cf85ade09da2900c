package admin

import (
	"context"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// defaultFactor is what AuthConfig twoFactor.defaultMethod did to a user
// the admin API created.
type defaultFactor struct {
	method       string // the AuthConfig's defaultMethod; "" when none is set
	enrolmentDue bool   // totp: the user sets up an app at the first sign-in
	enabled      bool   // sms/email: codes to the verified destination are on
	destination  string // of an enabled sms/email factor
}

// outcome names the result for the admin.write audit event.
func (d defaultFactor) outcome() string {
	switch {
	case d.enrolmentDue:
		return d.method + ":enrolment_due"
	case d.enabled:
		return d.method + ":enabled"
	}
	return d.method + ":not_applied"
}

// applyDefaultMethod gives a user just created through the admin API the
// second factor the AuthConfig's twoFactor.defaultMethod asks for. Users
// are created without a client, so the AuthConfig is the one that applies
// without one (id "default", else the only one, else none). It runs inside
// the creating transaction: the user and the factor are stored together or
// not at all. Existing users are never touched (this runs on create only).
//
//   - totp: an enrolment marker; the user pairs an authenticator app at the
//     first sign-in (hosted login, sign-in API), and the password grant
//     refuses the account until then.
//   - sms / email: codes to the user's phone number or e-mail address are
//     turned on when that destination is verified (phoneVerified /
//     emailVerified in the same write) and the AuthConfig has a webhook to
//     deliver them. There are no recovery codes yet: nobody would see them;
//     the user makes some on the settings page or through the API with a
//     code. Otherwise nothing is stored and the user has no second factor:
//     an unverified destination proves nothing, and a factor nobody can
//     deliver codes for would lock the user out. A marker like the totp one
//     cannot stand in, since only a verified destination can carry codes.
func (h *Handler) applyDefaultMethod(ctx context.Context, u store.User) (defaultFactor, error) {
	ac, err := resource.ResolveAuthConfig(ctx, h.Store, resource.Client{})
	if err != nil {
		return defaultFactor{}, fmt.Errorf("resolve auth config for new user %q: %w", u.ID, err)
	}
	if ac.TwoFactor == nil || ac.TwoFactor.DefaultMethod == "" {
		return defaultFactor{}, nil
	}
	d := defaultFactor{method: ac.TwoFactor.DefaultMethod}
	now := h.now()
	switch d.method {
	case resource.MethodTOTP:
		if err := h.Store.PutTwoFactor(ctx, resource.TOTPEnrolmentMarker(u.ID, now)); err != nil {
			return defaultFactor{}, fmt.Errorf("mark totp enrolment of %q: %w", u.ID, err)
		}
		d.enrolmentDue = true
		return d, nil
	case resource.MethodSMS:
		if u.PhoneNumber != "" && u.PhoneVerified {
			d.destination = u.PhoneNumber
		}
	case resource.MethodEmail:
		if u.Email != "" && u.EmailVerified {
			d.destination = u.Email
		}
	}
	if d.destination == "" || !h.canDeliver(ac, d.method) {
		return d, nil
	}
	err = h.Store.PutTwoFactor(ctx, store.TwoFactor{
		UserID: u.ID, Method: d.method, Enabled: true, Destination: d.destination,
		EnrolledAt: now, UpdatedAt: now,
	})
	if err != nil {
		return defaultFactor{}, fmt.Errorf("enable %s for %q: %w", d.method, u.ID, err)
	}
	d.enabled = true
	return d, nil
}
