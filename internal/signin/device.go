package signin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Remembered devices: after a second factor a user may ask the browser to
// be remembered. The browser keeps a random token (256 bits) in a cookie;
// the store keeps its SHA-256 (a hash is enough for a token that cannot be
// guessed: nothing to stretch). Whether the token skips the second factor
// of a later sign-in is decided here alone (deviceSkips); the hosted pages
// only carry the token.
const (
	// DeviceCap is how many remembered browsers a user keeps; remembering
	// one more drops the oldest.
	DeviceCap = 10
	// AMR of a sign-in whose second factor a remembered browser stood in
	// for: the password and mfa (two factors: the password, and possession
	// of a browser that proved a second factor within the configured
	// days), without otp or any method of a factor proven now.
	deviceTokenBytes = 32
	maxDeviceLabel   = 120
)

// ErrRememberOff: the policy of the sign-in does not let browsers be
// remembered.
var ErrRememberOff = errors.New("remembering this browser is not enabled")

// HashDeviceToken is what the store keeps of a device token.
func HashDeviceToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// RememberFor is how long the browser that finishes s may skip the second
// factor afterwards; 0 when s's policy does not allow it.
func (e *Engine) RememberFor(s *SignIn) time.Duration { return s.Policy.RememberDeviceFor() }

// Remember records the browser that just finished s with a second factor of
// strategy, and returns the token for its cookie (never stored, never
// logged) and when it expires. label says what the browser is (its
// User-Agent), for the user's list.
func (e *Engine) Remember(ctx context.Context, s *SignIn, strategy, label string) (token string, expires time.Time, err error) {
	ttl := e.RememberFor(s)
	if ttl <= 0 {
		return "", time.Time{}, ErrRememberOff
	}
	now := e.now()
	token = secret.RandomToken(deviceTokenBytes)
	d := store.RememberedDevice{
		ID: secret.RandomToken(12), UserID: s.User.ID, TokenHash: HashDeviceToken(token), Strategy: strategy,
		Label: cut(label, maxDeviceLabel), CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := e.Store.CreateRememberedDevice(ctx, d, DeviceCap); err != nil {
		return "", time.Time{}, fmt.Errorf("remember device of %q: %w", s.User.ID, err)
	}
	e.record(ctx, audit.DeviceRemembered, s, map[string]string{"device": d.ID, "strategy": strategy, "expires_at": d.ExpiresAt.Format(time.RFC3339)})
	return token, d.ExpiresAt, nil
}

// deviceSkips reports whether the remembered browser that holds token may
// stand in for s's second factor: a device of this user, unexpired, its
// second factor one the policy accepts, remembering still enabled and the
// device younger than the configured days; never for a level above mfa
// (a passkey cannot be remembered into phr), and never when the request's
// max_age is shorter than the time since the device's second factor was
// proven. A storage failure is an error; an unknown token is no device.
func (e *Engine) deviceSkips(ctx context.Context, s *SignIn, in BeginInput) (store.RememberedDevice, bool, error) {
	if in.DeviceToken == "" {
		return store.RememberedDevice{}, false, nil
	}
	ttl := e.RememberFor(s)
	if ttl <= 0 {
		return store.RememberedDevice{}, false, nil
	}
	if Level(Stronger(RequestedACR(in.ACRValues), s.Policy.RequiredACR())) > Level(ACRMFA) {
		return store.RememberedDevice{}, false, nil
	}
	now := e.now()
	d, err := e.Store.FindRememberedDevice(ctx, HashDeviceToken(in.DeviceToken), now)
	if errors.Is(err, store.ErrNotFound) {
		return store.RememberedDevice{}, false, nil
	}
	if err != nil {
		return store.RememberedDevice{}, false, err
	}
	switch {
	case d.UserID != s.User.ID:
		return d, false, nil
	case !now.Before(d.CreatedAt.Add(ttl)):
		return d, false, nil
	case in.MaxAge != nil && now.Sub(d.CreatedAt) > *in.MaxAge:
		return d, false, nil
	case s.restricted() && s.Policy.Methods() != nil && !s.Policy.Allows(d.Strategy):
		return d, false, nil
	}
	if err := e.Store.TouchRememberedDevice(ctx, d.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
		return d, false, fmt.Errorf("touch remembered device: %w", err)
	}
	e.record(ctx, audit.DeviceUsed, s, map[string]string{"device": d.ID, "strategy": d.Strategy})
	return d, true, nil
}

// rememberedResult is the sign-in a remembered browser finished: the
// password's auth_time, amr pwd and mfa (no otp: no code was typed now),
// acr mfa, and the strategy the device proved when it was remembered (so a
// client that accepts only other factors still asks for one).
func (e *Engine) rememberedResult(s *SignIn, d store.RememberedDevice) Result {
	r := e.result(s, "", nil)
	r.AMR = []string{AMRPassword, AMRMFA}
	r.ACR = ACRMFA
	r.Strategy = d.Strategy
	r.RememberedDevice = d.ID
	return r
}

// RevokeDevice forgets one remembered browser of userID (ErrNotFound when
// it is not theirs); by names who did it (user, admin) for the audit.
func (e *Engine) RevokeDevice(ctx context.Context, userID, id, by string) error {
	if err := e.Store.DeleteRememberedDevice(ctx, userID, id); err != nil {
		return err
	}
	e.record(ctx, audit.DeviceRevoked, &SignIn{User: store.User{ID: userID}}, map[string]string{"device": id, "by": by})
	return nil
}

// Devices lists userID's remembered browsers, newest first.
func (e *Engine) Devices(ctx context.Context, userID string) ([]store.RememberedDevice, error) {
	ds, err := e.Store.ListRememberedDevices(ctx, userID, e.now())
	if err != nil {
		return nil, fmt.Errorf("list remembered devices of %q: %w", userID, err)
	}
	return ds, nil
}

func (e *Engine) record(ctx context.Context, typ string, s *SignIn, detail map[string]string) {
	if e.TwoFactor == nil || e.TwoFactor.Audit == nil {
		return
	}
	_ = e.TwoFactor.Audit.Record(ctx, store.AuditEvent{Type: typ, UserID: s.User.ID, ClientID: s.Client.ID,
		RemoteAddr: s.Meta.RemoteAddr, RequestID: s.Meta.RequestID, Detail: detail})
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
