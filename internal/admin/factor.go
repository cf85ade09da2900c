package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// factorChange is what a User write does to the user's second factor.
type factorChange struct {
	remove   bool             // delete the factor record and the recovery codes
	reset    bool             // what remove deletes is an enabled factor
	enable   *store.TwoFactor // the SMS or e-mail factor the admin turns on
	previous string           // the enabled method that enable replaces, "" for none
}

// changed reports whether the user's second factor is different after the
// write: the credentials that sessions and tokens were given for changed.
func (c factorChange) changed() bool { return c.reset || c.enable != nil }

// planUserTwoFactor reads the writable part of User.twoFactor against the
// stored factor and rec, the user record the write stores (so a
// destination verified in the same write counts):
//
//   - enabled: false resets a factor (secret and recovery codes deleted).
//   - enabled: true, method: sms | email turns codes to the user's verified
//     phone number or e-mail address on (or moves an enabled factor to that
//     method or destination). The destination must be verified
//     (phoneVerified / emailVerified, or a verification code in the same
//     write), and the AuthConfig that applies without a client must have a
//     webhook to deliver the codes. Recovery codes stay as they are: the
//     admin would be the only one to see new ones.
//   - enabled: true, method: totp, or no method, only confirms the factor
//     the user has: a TOTP secret is the user's own, enrolled with their
//     authenticator app; an admin can reset it, not set it.
func (h *Handler) planUserTwoFactor(ctx context.Context, u resource.User, rec store.User) (factorChange, error) {
	want := u.TwoFactor
	if want == nil {
		return factorChange{}, nil
	}
	tf, err := h.Store.GetTwoFactor(ctx, u.ID)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return factorChange{}, fmt.Errorf("get two-factor of %q: %w", u.ID, err)
	}
	enabled := exists && tf.Enabled
	if !want.Enabled {
		return factorChange{remove: exists, reset: enabled}, nil
	}
	switch want.Method {
	case "":
		if !enabled {
			return factorChange{}, resource.Invalid("twoFactor.enabled", resource.CodeValue,
				"the user has no second factor to keep on: give method sms or email to turn on codes to a verified destination; "+
					"TOTP is enrolled by the user at /auth/two-factor/enable")
		}
		return factorChange{}, nil
	case resource.MethodTOTP:
		if enabled && tf.Method == resource.MethodTOTP {
			return factorChange{}, nil
		}
		return factorChange{}, resource.Invalid("twoFactor.method", resource.CodeValue,
			"TOTP is enrolled by the user with their authenticator app (/auth/two-factor/enable, or at sign-in); "+
				"an admin can reset it (enabled: false) or turn on sms or email codes, not set a TOTP secret")
	case resource.MethodSMS, resource.MethodEmail:
	default:
		return factorChange{}, resource.Invalid("twoFactor.method", resource.CodeValue, "must be totp, sms or email")
	}
	dest, err := verifiedDestination(want.Method, rec)
	if err != nil {
		return factorChange{}, err
	}
	if enabled && tf.Method == want.Method && tf.Destination == dest {
		return factorChange{}, nil // already so
	}
	ac, err := resource.ResolveAuthConfig(ctx, h.Store, resource.Client{})
	if err != nil {
		return factorChange{}, fmt.Errorf("resolve auth config for %q: %w", u.ID, err)
	}
	if !h.canDeliver(ac, want.Method) {
		return factorChange{}, resource.Invalid("twoFactor.method", resource.CodeValue,
			"no webhook (or, for email, SMTP server) would deliver the codes: give the AuthConfig that applies without a client (id \"default\", or the only one) a twoFactor.webhook first")
	}
	now := h.now()
	next := &store.TwoFactor{
		UserID: u.ID, Method: want.Method, Enabled: true, Destination: dest,
		EnrolledAt: now, UpdatedAt: now,
	}
	c := factorChange{enable: next}
	if exists {
		// A method change is no way around a lockout in force.
		next.Failures, next.LockedUntil, next.Lockouts = tf.Failures, tf.LockedUntil, tf.Lockouts
	}
	if enabled {
		c.previous = tf.Method
	}
	return c, nil
}

// verifiedDestination is the phone number (sms) or e-mail address (email)
// of rec that codes may go to: present and verified, else a 422 naming
// the field.
func verifiedDestination(method string, rec store.User) (string, error) {
	if method == resource.MethodSMS {
		switch {
		case rec.PhoneNumber == "":
			return "", resource.Invalid("phoneNumber", resource.CodeRequired,
				"SMS codes need the user's phone number, verified: give phoneNumber with phoneVerificationCode")
		case !rec.PhoneVerified:
			return "", resource.Invalid("phoneNumber", resource.CodeValue,
				"SMS codes go to a verified phone number only: give phoneVerificationCode, the code sent by POST /User/{id}/$verification-codes")
		}
		return rec.PhoneNumber, nil
	}
	switch {
	case rec.Email == "":
		return "", resource.Invalid("email", resource.CodeRequired,
			"e-mail codes need the user's e-mail address, verified: give email with emailVerificationCode")
	case !rec.EmailVerified:
		return "", resource.Invalid("email", resource.CodeValue,
			"e-mail codes go to a verified address only: give emailVerificationCode, the code sent by POST /User/{id}/$verification-codes")
	}
	return rec.Email, nil
}

// applyFactorChange stores c, inside the write's transaction, after the
// user record (a new user must exist before its factor).
func (h *Handler) applyFactorChange(ctx context.Context, userID string, c factorChange) error {
	if c.remove {
		if err := h.Store.DeleteTwoFactor(ctx, userID); err != nil {
			return fmt.Errorf("reset two-factor of %q: %w", userID, err)
		}
	}
	if c.enable != nil {
		if err := h.Store.PutTwoFactor(ctx, *c.enable); err != nil {
			return fmt.Errorf("enable %s for %q: %w", c.enable.Method, userID, err)
		}
	}
	return nil
}

// recordFactorChange audits c once the write has committed.
func (h *Handler) recordFactorChange(ctx context.Context, who actor, userID string, version int64, c factorChange) {
	if c.reset {
		h.record(ctx, audit.TwoFactorReset, who, resource.TypeUser, userID, version, false, nil)
	}
	if c.enable != nil {
		detail := map[string]string{
			"method": c.enable.Method, "destination": twofactor.MaskDestination(c.enable.Destination), "by": "admin",
		}
		if c.previous != "" {
			detail["previousMethod"] = c.previous
		}
		h.record(ctx, audit.TwoFactorEnabled, who, resource.TypeUser, userID, version, false, detail)
	}
}

// outcome names c for the admin.write event ("" when nothing changed).
func (c factorChange) outcome() string {
	switch {
	case c.enable != nil:
		return c.enable.Method + ":enabled"
	case c.reset:
		return "reset"
	}
	return ""
}

// canDeliver reports whether codes of method can be sent under ac (the
// rule of package policy, with the server's own SMTP server).
func (h *Handler) canDeliver(ac resource.AuthConfig, method string) bool {
	return policy.Policy{AuthConfig: ac, ServerSMTP: h.ServerSMTP}.CanDeliver(method)
}
