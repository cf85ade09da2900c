package passkey

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// ChallengeTTL is how long the options of one ceremony stay answerable.
const ChallengeTTL = 5 * time.Minute

// HandleKeyPurpose derives the key of user handles from the master key
// (secret.Derive).
const HandleKeyPurpose = "gatehouse webauthn user handle v1"

// Purposes of a challenge: what its answer may be used for.
const (
	PurposeRegister     = "register"
	PurposeSecondFactor = "second_factor"
	PurposePasswordless = "passwordless"
)

// Authentication methods (RFC 8176) a passkey proves.
const (
	AMRHardwareKey = "hwk"
	AMRUser        = "user"
)

// Audit event types of passkeys.
const (
	EventRegistered      = "passkey.registered"
	EventRenamed         = "passkey.renamed"
	EventDeleted         = "passkey.deleted"
	EventRefused         = "passkey.refused"
	EventCloneSuspected  = "passkey.counter_regression"
	EventPasswordlessUse = "passkey.passwordless"
)

// MaxNameLen limits a passkey's name.
const MaxNameLen = 64

// MaxResponseBytes bounds the JSON of one browser answer.
const MaxResponseBytes = 32 << 10

// Errors. Every refused answer is ErrInvalid (the reason is in Reason and
// in the audit log, never shown): malformed JSON, an unknown, used,
// expired or foreign challenge, a wrong origin or rpId, a bad signature or
// attestation, an unknown credential, a counter that went back.
var (
	ErrInvalid    = errors.New("the passkey answer was not accepted")
	ErrNoPasskeys = errors.New("no passkey is registered for this account")
	ErrBadName    = errors.New("a passkey name is 1 to 64 characters without control characters")
	errConfig     = errors.New("passkey relying party")
)

// Refusal reasons, in audit details and Reason.
const (
	reasonMalform  = "malformed"
	reasonUnknownC = "unknown_challenge"
	reasonVerify   = "verification_failed"
	reasonUnknownK = "unknown_credential"
	reasonCounter  = "counter_regression"
	reasonNoUV     = "user_not_verified"
)

// Refusal is an ErrInvalid with its reason, for logs and tests.
type Refusal struct {
	Reason string
	Err    error // the library's answer, when it gave one
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return ErrInvalid.Error() + " (" + r.Reason + "): " + r.Err.Error()
	}
	return ErrInvalid.Error() + " (" + r.Reason + ")"
}
func (r *Refusal) Is(target error) bool { return target == ErrInvalid }
func (r *Refusal) Unwrap() error        { return r.Err }

func refuse(reason string, err error) error { return &Refusal{Reason: reason, Err: err} }

// Reason is the refusal reason of err ("" when err is not a refusal).
func Reason(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Service runs WebAuthn ceremonies over a Store with
// github.com/go-webauthn/webauthn. Store, Issuer and HandleKey are
// required.
type Service struct {
	Store store.Store
	// Issuer is the server's public base URL: the default relying party.
	Issuer string
	// HandleKey keys the user handles given to authenticators (an HMAC of
	// the user id, so the handle reveals nothing and needs no column).
	HandleKey []byte
	Audit     *audit.Recorder
	Logger    *slog.Logger
	Now       func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Service) record(ctx context.Context, typ, userID string, m twofactor.Meta, detail map[string]string) {
	if s.Audit == nil {
		return
	}
	_ = s.Audit.Record(ctx, store.AuditEvent{Type: typ, UserID: userID, ClientID: m.ClientID, RemoteAddr: m.RemoteAddr, RequestID: m.RequestID, Detail: detail})
}

// RelyingParty is the effective passkey relying party of an AuthConfig.
type RelyingParty struct {
	ID               string
	Name             string
	Origins          []string
	UserVerification string
	Attestation      string
}

// RelyingParty resolves ac's webauthn settings over the defaults: rpId the
// issuer's host (localhost for a loopback IP address, which browsers
// refuse as an rpId), origins the issuer's origin (on a loopback issuer
// also the same port on localhost), rpName the theme's brand or the
// two-factor issuer name, userVerification preferred, attestation none.
func (s *Service) RelyingParty(ac resource.AuthConfig) (RelyingParty, error) {
	u, err := url.Parse(s.Issuer)
	if err != nil || u.Hostname() == "" {
		return RelyingParty{}, fmt.Errorf("%w: issuer %q is not a URL with a host", errConfig, s.Issuer)
	}
	host := strings.ToLower(u.Hostname())
	origin := u.Scheme + "://" + u.Host
	rp := RelyingParty{ID: host, Name: ac.Issuer(), Origins: []string{origin},
		UserVerification: resource.UserVerificationPreferred, Attestation: resource.AttestationNone}
	if th := ac.ThemeOrEmpty(); th.Brand != "" {
		rp.Name = th.Brand
	}
	if resource.IsLoopbackHost(host) && host != "localhost" {
		rp.ID = "localhost"
		local := u.Scheme + "://localhost"
		if p := u.Port(); p != "" {
			local += ":" + p
		}
		rp.Origins = []string{local}
	}
	if wa := ac.WebAuthn; wa != nil {
		if wa.RPID != "" {
			rp.ID = wa.RPID
			if len(wa.Origins) == 0 && !resource.OriginUnderRPID(rp.Origins[0], rp.ID) {
				rp.Origins = []string{"https://" + rp.ID}
			}
		}
		if len(wa.Origins) > 0 {
			rp.Origins = append([]string(nil), wa.Origins...)
		}
		if wa.RPName != "" {
			rp.Name = wa.RPName
		}
		if wa.UserVerification != "" {
			rp.UserVerification = wa.UserVerification
		}
		if wa.Attestation != "" {
			rp.Attestation = wa.Attestation
		}
	}
	return rp, nil
}

func (s *Service) webAuthn(ac resource.AuthConfig) (*webauthn.WebAuthn, RelyingParty, error) {
	rp, err := s.RelyingParty(ac)
	if err != nil {
		return nil, rp, err
	}
	conveyance := protocol.PreferNoAttestation
	if rp.Attestation == resource.AttestationDirect {
		conveyance = protocol.PreferDirectAttestation
	}
	w, err := webauthn.New(&webauthn.Config{
		RPID:                  rp.ID,
		RPDisplayName:         rp.Name,
		RPOrigins:             rp.Origins,
		AttestationPreference: conveyance,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.UserVerificationRequirement(rp.UserVerification),
		},
		// The browser's timeout; the server's is the challenge's expiry
		// on the injected clock (ChallengeTTL), checked by the store.
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: ChallengeTTL, TimeoutUVD: ChallengeTTL},
			Registration: webauthn.TimeoutConfig{Timeout: ChallengeTTL, TimeoutUVD: ChallengeTTL},
		},
	})
	if err != nil {
		return nil, rp, fmt.Errorf("%w: %w", errConfig, err)
	}
	return w, rp, nil
}

// Handle is the user handle of userID: 32 bytes, the same on every
// process, revealing nothing of the id.
func (s *Service) Handle(userID string) []byte {
	m := hmac.New(sha256.New, s.HandleKey)
	m.Write([]byte(userID))
	return m.Sum(nil)
}

// waUser is a store user as the webauthn library sees one.
type waUser struct {
	u      store.User
	handle []byte
	creds  []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte { return w.handle }
func (w *waUser) WebAuthnName() string {
	if w.u.Email != "" {
		return w.u.Email
	}
	return w.u.ID
}
func (w *waUser) WebAuthnDisplayName() string                { return w.WebAuthnName() }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

func (s *Service) loadUser(ctx context.Context, u store.User) (*waUser, []store.WebAuthnCredential, error) {
	recs, err := s.Store.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("list passkeys of %q: %w", u.ID, err)
	}
	wu := &waUser{u: u, handle: s.Handle(u.ID)}
	for _, r := range recs {
		c, err := toLibrary(r)
		if err != nil {
			return nil, nil, err
		}
		wu.creds = append(wu.creds, c)
	}
	return wu, recs, nil
}

func toLibrary(r store.WebAuthnCredential) (webauthn.Credential, error) {
	id, err := base64.RawURLEncoding.DecodeString(r.ID)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("stored passkey id %q: %w", r.ID, err)
	}
	c := webauthn.Credential{
		ID: id, PublicKey: r.PublicKey, AttestationType: r.AttestationType, AttestationFormat: r.AttestationFmt,
		Flags:         webauthn.CredentialFlags{UserPresent: r.UserPresent, UserVerified: r.UserVerified, BackupEligible: r.BackupEligible, BackupState: r.BackupState},
		Authenticator: webauthn.Authenticator{AAGUID: r.AAGUID, SignCount: r.SignCount, Attachment: protocol.AuthenticatorAttachment(r.Attachment)},
	}
	for _, t := range r.Transports {
		c.Transport = append(c.Transport, protocol.AuthenticatorTransport(t))
	}
	return c, nil
}

// saveChallenge keeps the session data of a ceremony for ChallengeTTL,
// bound to binding (and to userID unless the login is discoverable).
func (s *Service) saveChallenge(ctx context.Context, sd *webauthn.SessionData, userID, binding, purpose string) (time.Time, error) {
	if binding == "" {
		return time.Time{}, errors.New("save passkey challenge: no binding")
	}
	raw, err := json.Marshal(sd)
	if err != nil {
		return time.Time{}, fmt.Errorf("save passkey challenge: %w", err)
	}
	now := s.now()
	exp := now.Add(ChallengeTTL)
	if err := s.Store.CreateWebAuthnChallenge(ctx, store.WebAuthnChallenge{
		Challenge: sd.Challenge, UserID: userID, BindingID: binding, Purpose: purpose, Session: raw, CreatedAt: now, ExpiresAt: exp,
	}); err != nil {
		return time.Time{}, fmt.Errorf("save passkey challenge: %w", err)
	}
	return exp, nil
}

// takeChallenge consumes the challenge an answer names: once, unexpired,
// for this binding, purpose and user.
func (s *Service) takeChallenge(ctx context.Context, challenge, userID, binding, purpose string) (webauthn.SessionData, error) {
	if challenge == "" || binding == "" {
		return webauthn.SessionData{}, refuse(reasonUnknownC, nil)
	}
	ch, err := s.Store.ConsumeWebAuthnChallenge(ctx, challenge, binding, purpose, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return webauthn.SessionData{}, refuse(reasonUnknownC, nil)
	}
	if err != nil {
		return webauthn.SessionData{}, err
	}
	if ch.UserID != userID {
		return webauthn.SessionData{}, refuse(reasonUnknownC, nil)
	}
	var sd webauthn.SessionData
	if err := json.Unmarshal(ch.Session, &sd); err != nil {
		return webauthn.SessionData{}, fmt.Errorf("read passkey challenge: %w", err)
	}
	return sd, nil
}

// publicKeyOptions is the JSON the browser gets: {"publicKey": {...}}, as
// PublicKeyCredential.parse{Creation,Request}OptionsFromJSON reads it.
func publicKeyOptions(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode passkey options: %w", err)
	}
	return b, nil
}

// ---- registration

// BeginRegistration returns the creation options for a new passkey of u:
// resident key preferred, the user's passkeys excluded (one authenticator
// is not registered twice), the challenge bound to binding.
func (s *Service) BeginRegistration(ctx context.Context, ac resource.AuthConfig, u store.User, binding string) (json.RawMessage, time.Time, error) {
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return nil, time.Time{}, err
	}
	wu, _, err := s.loadUser(ctx, u)
	if err != nil {
		return nil, time.Time{}, err
	}
	creation, sd, err := w.BeginRegistration(wu,
		webauthn.WithExclusions(webauthn.Credentials(wu.creds).CredentialDescriptors()),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementPreferred),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
	)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("begin passkey registration: %w", err)
	}
	exp, err := s.saveChallenge(ctx, sd, u.ID, binding, PurposeRegister)
	if err != nil {
		return nil, time.Time{}, err
	}
	opts, err := publicKeyOptions(creation)
	return opts, exp, err
}

// CleanName checks a passkey name; "" becomes fallback.
func CleanName(name, fallback string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = fallback
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen || strings.ContainsFunc(name, unicode.IsControl) {
		return "", ErrBadName
	}
	return name, nil
}

// FinishRegistration checks the browser's attestation answer against the
// challenge bound to binding and stores the passkey under name. Every
// refusal is ErrInvalid and stores nothing.
func (s *Service) FinishRegistration(ctx context.Context, ac resource.AuthConfig, u store.User, binding string, response []byte, name string, m twofactor.Meta) (store.WebAuthnCredential, error) {
	name, err := CleanName(name, "Passkey")
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	if len(response) > MaxResponseBytes {
		return store.WebAuthnCredential{}, s.refused(ctx, u.ID, PurposeRegister, m, refuse(reasonMalform, nil))
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return store.WebAuthnCredential{}, s.refused(ctx, u.ID, PurposeRegister, m, refuse(reasonMalform, err))
	}
	sd, err := s.takeChallenge(ctx, parsed.Response.CollectedClientData.Challenge, u.ID, binding, PurposeRegister)
	if err != nil {
		return store.WebAuthnCredential{}, s.refused(ctx, u.ID, PurposeRegister, m, err)
	}
	wu, _, err := s.loadUser(ctx, u)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	cred, err := w.CreateCredential(wu, sd, parsed)
	if err != nil {
		return store.WebAuthnCredential{}, s.refused(ctx, u.ID, PurposeRegister, m, refuse(reasonVerify, err))
	}
	rec := store.WebAuthnCredential{
		ID: base64.RawURLEncoding.EncodeToString(cred.ID), UserID: u.ID, PublicKey: cred.PublicKey,
		AttestationType: cred.AttestationType, AttestationFmt: cred.AttestationFormat, AAGUID: cred.Authenticator.AAGUID,
		SignCount: cred.Authenticator.SignCount, Attachment: string(cred.Authenticator.Attachment),
		UserPresent: cred.Flags.UserPresent, UserVerified: cred.Flags.UserVerified,
		BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
		Name: name, CreatedAt: s.now(),
	}
	for _, t := range cred.Transport {
		rec.Transports = append(rec.Transports, string(t))
	}
	switch err := s.Store.CreateWebAuthnCredential(ctx, rec); {
	case errors.Is(err, store.ErrConflict):
		// Registered already (by this user or another): the exclude list
		// should have stopped the browser.
		return store.WebAuthnCredential{}, s.refused(ctx, u.ID, PurposeRegister, m, refuse(reasonVerify, errors.New("credential id already registered")))
	case err != nil:
		return store.WebAuthnCredential{}, fmt.Errorf("store passkey of %q: %w", u.ID, err)
	}
	s.record(ctx, EventRegistered, u.ID, m, map[string]string{"credential": rec.ID, "name": rec.Name})
	return rec, nil
}

func (s *Service) refused(ctx context.Context, userID, purpose string, m twofactor.Meta, err error) error {
	if r := Reason(err); r != "" {
		s.record(ctx, EventRefused, userID, m, map[string]string{"reason": r, "ceremony": purpose})
		s.log().InfoContext(ctx, "passkey answer refused", "user", userID, "ceremony", purpose, "reason", r, "err", err)
	}
	return err
}

// ---- assertions

// Assertion is a verified passkey answer.
type Assertion struct {
	CredentialID string
	UserVerified bool
}

// AMR is what the assertion proved (RFC 8176): hwk, and user when the
// authenticator verified the user (a PIN or biometric on the device).
func (a Assertion) AMR() []string {
	if a.UserVerified {
		return []string{AMRHardwareKey, AMRUser}
	}
	return []string{AMRHardwareKey}
}

// HasPasskeys reports whether userID has any passkey.
func (s *Service) HasPasskeys(ctx context.Context, userID string) (bool, error) {
	recs, err := s.Store.ListWebAuthnCredentials(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("list passkeys of %q: %w", userID, err)
	}
	return len(recs) > 0, nil
}

// BeginAssertion returns the request options that ask for one of u's
// passkeys (a second factor), bound to binding.
func (s *Service) BeginAssertion(ctx context.Context, ac resource.AuthConfig, u store.User, binding string) (json.RawMessage, time.Time, error) {
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return nil, time.Time{}, err
	}
	wu, _, err := s.loadUser(ctx, u)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(wu.creds) == 0 {
		return nil, time.Time{}, ErrNoPasskeys
	}
	assertion, sd, err := w.BeginLogin(wu)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("begin passkey assertion: %w", err)
	}
	exp, err := s.saveChallenge(ctx, sd, u.ID, binding, PurposeSecondFactor)
	if err != nil {
		return nil, time.Time{}, err
	}
	opts, err := publicKeyOptions(assertion)
	return opts, exp, err
}

// FinishAssertion checks an answer to BeginAssertion's options: the
// challenge (once, unexpired, this binding and user), origin, rpId,
// signature, and a sign counter that moved forward. Every refusal is
// ErrInvalid; a counter that went back is also audited as a suspected
// cloned authenticator. Nothing is stored but the counter and the time
// of use.
func (s *Service) FinishAssertion(ctx context.Context, ac resource.AuthConfig, u store.User, binding string, response []byte, m twofactor.Meta) (Assertion, error) {
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return Assertion{}, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return Assertion{}, s.refused(ctx, u.ID, PurposeSecondFactor, m, err)
	}
	sd, err := s.takeChallenge(ctx, parsed.Response.CollectedClientData.Challenge, u.ID, binding, PurposeSecondFactor)
	if err != nil {
		return Assertion{}, s.refused(ctx, u.ID, PurposeSecondFactor, m, err)
	}
	wu, _, err := s.loadUser(ctx, u)
	if err != nil {
		return Assertion{}, err
	}
	if !ownsCredential(wu, parsed.RawID) {
		return Assertion{}, s.refused(ctx, u.ID, PurposeSecondFactor, m, refuse(reasonUnknownK, nil))
	}
	cred, err := w.ValidateLogin(wu, sd, parsed)
	if err != nil {
		return Assertion{}, s.refused(ctx, u.ID, PurposeSecondFactor, m, refuse(reasonVerify, err))
	}
	return s.used(ctx, u.ID, PurposeSecondFactor, cred, parsed, m)
}

// BeginPasswordless returns request options for any passkey of this
// relying party (a discoverable credential; the browser lets the person
// pick one), user verification required, bound to binding.
func (s *Service) BeginPasswordless(ctx context.Context, ac resource.AuthConfig, binding string) (json.RawMessage, time.Time, error) {
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return nil, time.Time{}, err
	}
	assertion, sd, err := w.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("begin passwordless passkey sign-in: %w", err)
	}
	exp, err := s.saveChallenge(ctx, sd, "", binding, PurposePasswordless)
	if err != nil {
		return nil, time.Time{}, err
	}
	opts, err := publicKeyOptions(assertion)
	return opts, exp, err
}

// FinishPasswordless checks an answer to BeginPasswordless's options and
// returns whose passkey it was. The user must exist and be active, and
// the authenticator must have verified the user: a passwordless sign-in
// is then two factors (the device and its PIN or biometric).
func (s *Service) FinishPasswordless(ctx context.Context, ac resource.AuthConfig, binding string, response []byte, m twofactor.Meta) (store.User, Assertion, error) {
	w, _, err := s.webAuthn(ac)
	if err != nil {
		return store.User{}, Assertion{}, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return store.User{}, Assertion{}, s.refused(ctx, "", PurposePasswordless, m, err)
	}
	sd, err := s.takeChallenge(ctx, parsed.Response.CollectedClientData.Challenge, "", binding, PurposePasswordless)
	if err != nil {
		return store.User{}, Assertion{}, s.refused(ctx, "", PurposePasswordless, m, err)
	}
	rec, err := s.Store.GetWebAuthnCredential(ctx, base64.RawURLEncoding.EncodeToString(parsed.RawID))
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, Assertion{}, s.refused(ctx, "", PurposePasswordless, m, refuse(reasonUnknownK, nil))
	}
	if err != nil {
		return store.User{}, Assertion{}, fmt.Errorf("find passkey: %w", err)
	}
	u, err := s.Store.GetUser(ctx, rec.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Inactive) {
		return store.User{}, Assertion{}, s.refused(ctx, rec.UserID, PurposePasswordless, m, refuse(reasonUnknownK, nil))
	}
	if err != nil {
		return store.User{}, Assertion{}, fmt.Errorf("get user %q: %w", rec.UserID, err)
	}
	wu, _, err := s.loadUser(ctx, u)
	if err != nil {
		return store.User{}, Assertion{}, err
	}
	_, cred, err := w.ValidatePasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
		if !bytes.Equal(userHandle, wu.handle) {
			return nil, errors.New("user handle does not match the credential's owner")
		}
		return wu, nil
	}, sd, parsed)
	if err != nil {
		return store.User{}, Assertion{}, s.refused(ctx, u.ID, PurposePasswordless, m, refuse(reasonVerify, err))
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return store.User{}, Assertion{}, s.refused(ctx, u.ID, PurposePasswordless, m, refuse(reasonNoUV, nil))
	}
	a, err := s.used(ctx, u.ID, PurposePasswordless, cred, parsed, m)
	if err != nil {
		return store.User{}, Assertion{}, err
	}
	s.record(ctx, EventPasswordlessUse, u.ID, m, map[string]string{"credential": a.CredentialID})
	return u, a, nil
}

// PasswordlessOwner reads whose passkey a passwordless answer names,
// before it is checked, so that the check can be counted on that user's
// attempt counter. A malformed answer or an unknown passkey is ErrInvalid
// (and audited); nothing is consumed.
func (s *Service) PasswordlessOwner(ctx context.Context, response []byte, m twofactor.Meta) (store.User, error) {
	parsed, err := parseAssertion(response)
	if err != nil {
		return store.User{}, s.refused(ctx, "", PurposePasswordless, m, err)
	}
	rec, err := s.Store.GetWebAuthnCredential(ctx, base64.RawURLEncoding.EncodeToString(parsed.RawID))
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, s.refused(ctx, "", PurposePasswordless, m, refuse(reasonUnknownK, nil))
	}
	if err != nil {
		return store.User{}, fmt.Errorf("find passkey: %w", err)
	}
	u, err := s.Store.GetUser(ctx, rec.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Inactive) {
		return store.User{}, s.refused(ctx, rec.UserID, PurposePasswordless, m, refuse(reasonUnknownK, nil))
	}
	if err != nil {
		return store.User{}, fmt.Errorf("get user %q: %w", rec.UserID, err)
	}
	return u, nil
}

func parseAssertion(response []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(response) > MaxResponseBytes {
		return nil, refuse(reasonMalform, nil)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, refuse(reasonMalform, err)
	}
	return parsed, nil
}

func ownsCredential(wu *waUser, rawID []byte) bool {
	for _, c := range wu.creds {
		if bytes.Equal(c.ID, rawID) {
			return true
		}
	}
	return false
}

// used records a verified assertion: the counter must have moved forward
// (the library flags a clone, the store refuses a counter that did not
// advance, also between two racing answers), then the time of use.
func (s *Service) used(ctx context.Context, userID, purpose string, cred *webauthn.Credential, parsed *protocol.ParsedCredentialAssertionData, m twofactor.Meta) (Assertion, error) {
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	flags := parsed.Response.AuthenticatorData.Flags
	count := parsed.Response.AuthenticatorData.Counter
	err := s.Store.UseWebAuthnCredential(ctx, userID, id, count, flags.HasBackupState(), flags.HasUserVerified(), s.now())
	if cred.Authenticator.CloneWarning || errors.Is(err, store.ErrConflict) {
		s.record(ctx, EventCloneSuspected, userID, m, map[string]string{"credential": id, "sign_count": fmt.Sprint(count)})
		s.log().WarnContext(ctx, "passkey sign counter went back: a cloned authenticator?", "user", userID, "credential", id)
		return Assertion{}, s.refused(ctx, userID, purpose, m, refuse(reasonCounter, nil))
	}
	if errors.Is(err, store.ErrNotFound) {
		return Assertion{}, s.refused(ctx, userID, purpose, m, refuse(reasonUnknownK, nil))
	}
	if err != nil {
		return Assertion{}, fmt.Errorf("record passkey use: %w", err)
	}
	return Assertion{CredentialID: id, UserVerified: flags.HasUserVerified()}, nil
}

// ---- management

// List is userID's passkeys, oldest first.
func (s *Service) List(ctx context.Context, userID string) ([]store.WebAuthnCredential, error) {
	recs, err := s.Store.ListWebAuthnCredentials(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list passkeys of %q: %w", userID, err)
	}
	return recs, nil
}

// Rename names userID's passkey id.
func (s *Service) Rename(ctx context.Context, userID, id, name string, m twofactor.Meta) error {
	name, err := CleanName(name, "")
	if err != nil {
		return err
	}
	if err := s.Store.RenameWebAuthnCredential(ctx, userID, id, name); err != nil {
		return fmt.Errorf("rename passkey: %w", err)
	}
	s.record(ctx, EventRenamed, userID, m, map[string]string{"credential": id, "name": name})
	return nil
}

// Delete removes userID's passkey id and, as for any change of a second
// factor, ends the user's other browser sessions (all but keepSessionID)
// and deactivates their tokens but the family keepTokenFamily.
func (s *Service) Delete(ctx context.Context, userID, id, keepSessionID, keepTokenFamily string, m twofactor.Meta) error {
	err := s.Store.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.DeleteWebAuthnCredential(ctx, userID, id); err != nil {
			return err
		}
		if err := s.Store.DeleteBrowserSessionsByUser(ctx, userID, keepSessionID); err != nil {
			return err
		}
		if keepTokenFamily != "" {
			return s.Store.DeactivateOtherOAuthRequests(ctx, userID, keepTokenFamily)
		}
		return s.Store.DeactivateOAuthRequestsBySubject(ctx, userID)
	})
	if err != nil {
		return fmt.Errorf("delete passkey: %w", err)
	}
	s.record(ctx, EventDeleted, userID, m, map[string]string{"credential": id})
	return nil
}
