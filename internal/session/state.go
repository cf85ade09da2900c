package session

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Lifetimes of the steps a login parks in the session.
const (
	// PendingAuthorizeTTL bounds how long a parked authorization request
	// waits for the user to sign in.
	PendingAuthorizeTTL = 30 * time.Minute
	// PendingSecondFactorTTL bounds the time between a correct password and
	// the second factor.
	PendingSecondFactorTTL = 10 * time.Minute
	// PendingEnrolmentTTL bounds how long a TOTP secret shown for enrolment
	// stays valid.
	PendingEnrolmentTTL = 15 * time.Minute
)

// State is the JSON kept in the record beside the user. Fields are exported
// for encoding only; use the Session's methods.
type State struct {
	CSRF         string               `json:"csrf,omitempty"`
	Authorize    *PendingAuthorize    `json:"authorize,omitempty"`
	SecondFactor *PendingSecondFactor `json:"secondFactor,omitempty"`
	Enrolment    *PendingEnrolment    `json:"enrolment,omitempty"`
	StepUp       *PendingStepUp       `json:"stepUp,omitempty"`
	// Factors are the second-factor strategies the signed-in user proved
	// in this session (totp, phone_code, backup_code, …), for clients that
	// accept only some.
	Factors []string `json:"factors,omitempty"`
	// PasswordAt is the last time this browser's user typed a correct
	// password; pages that change credentials ask for a recent one.
	PasswordAt time.Time `json:"passwordAt,omitzero"`
	// ReturnTo is a local path to go to after a sign-in that no
	// authorization request is waiting for.
	ReturnTo string `json:"returnTo,omitempty"`
	// Clients are the clients this session signed in to, told when it
	// ends (OpenID Connect Back-Channel Logout).
	Clients []string `json:"clients,omitempty"`
	// UILocales is the ui_locales of the last authorization request or
	// page that named one: the pages' first language preference.
	UILocales string `json:"uiLocales,omitempty"`
}

// maxUILocalesLen bounds State.UILocales (a few tags are plenty).
const maxUILocalesLen = 128

// maxSessionClients bounds State.Clients; the oldest is dropped.
const maxSessionClients = 32

// Consent decisions on a parked authorization request.
const (
	ConsentAllowed = "allow"
	ConsentDenied  = "deny"
)

// PendingAuthorize is an authorization request parked while the user signs
// in or decides on consent. It is resumed by replaying Query at
// /auth/authorize, and recognised there by that same Query.
type PendingAuthorize struct {
	Query    string `json:"query"` // the original parameters, URL-encoded
	ClientID string `json:"clientId"`
	// RedirectURI is where the request ends (validated when it was
	// parked); pages of the flow allow it as a form-action.
	RedirectURI string    `json:"redirectUri"`
	CreatedAt   time.Time `json:"createdAt"`
	// Consent is "", ConsentAllowed or ConsentDenied.
	Consent string `json:"consent,omitempty"`
}

// Expired reports whether the parked request is too old to resume.
func (p *PendingAuthorize) Expired(now time.Time) bool {
	return !now.Before(p.CreatedAt.Add(PendingAuthorizeTTL))
}

// PendingSecondFactor is a password accepted for UserID while a second
// factor is still due.
type PendingSecondFactor struct {
	UserID     string    `json:"userId"`
	PasswordAt time.Time `json:"passwordAt"`
	ClientID   string    `json:"clientId,omitempty"`
	// Enrolled: the user has an enabled factor. When false the factor is
	// due because the client or the AuthConfig requires one, and the user
	// must enrol first.
	Enrolled bool `json:"enrolled"`
}

// Expired reports whether the password is too old to finish this login with.
func (p *PendingSecondFactor) Expired(now time.Time) bool {
	return !now.Before(p.PasswordAt.Add(PendingSecondFactorTTL))
}

// PendingStepUp is a signed-in session that owes one more factor before
// a client may have it: the user is asked for that factor only, and the
// sign-in's time (auth_time) stays the first factor's.
type PendingStepUp struct {
	UserID   string `json:"userId"`
	ClientID string `json:"clientId,omitempty"`
	// ACR is the level the step-up must reach ("" when only the user's
	// own factor is owed).
	ACR string `json:"acr,omitempty"`
	// Enrolled: the user has a factor to prove; false: they set one up.
	Enrolled  bool      `json:"enrolled"`
	CreatedAt time.Time `json:"createdAt"`
}

// Expired reports whether the step-up is too old to finish.
func (p *PendingStepUp) Expired(now time.Time) bool {
	return !now.Before(p.CreatedAt.Add(PendingSecondFactorTTL))
}

// BeginStepUp records that the signed-in user owes p's factor. The session
// stays signed in at its present level meanwhile.
func (s *Session) BeginStepUp(p PendingStepUp) {
	if !s.Authenticated() {
		return
	}
	p.UserID = s.rec.UserID
	p.CreatedAt = p.CreatedAt.UTC()
	s.state.StepUp = &p
	s.dirty = true
}

// PendingStepUp returns the signed-in user's step-up, or nil. Callers
// check Expired.
func (s *Session) PendingStepUp() *PendingStepUp {
	if s.state.StepUp == nil || !s.Authenticated() || s.state.StepUp.UserID != s.rec.UserID {
		return nil
	}
	p := *s.state.StepUp
	return &p
}

// ClearStepUp abandons a pending step-up; the session keeps its level.
func (s *Session) ClearStepUp() {
	if s.state.StepUp != nil {
		s.state.StepUp = nil
		s.dirty = true
	}
}

// SteppedUp records the methods of a finished step-up (the session's and
// the new factor's): the level rises, the sign-in's time stays. Call
// Manager.Rotate next.
func (s *Session) SteppedUp(amr []string, factor string) {
	s.rec.AMR = append([]string(nil), amr...)
	if factor != "" && !slices.Contains(s.state.Factors, factor) {
		s.state.Factors = append(s.state.Factors, factor)
	}
	s.state.StepUp = nil
	s.dirty = true
}

// Factors are the second-factor strategies proved in this sign-in (nil
// while not signed in).
func (s *Session) Factors() []string {
	if !s.Authenticated() {
		return nil
	}
	return slices.Clone(s.state.Factors)
}

// PendingEnrolment is a TOTP secret shown to a user and not yet confirmed.
// The secret is sealed: the record is in the database.
type PendingEnrolment struct {
	UserID    string    `json:"userId"`
	Sealed    []byte    `json:"sealed"`
	CreatedAt time.Time `json:"createdAt"`
}

// PendingAuthorize returns the parked authorization request, or nil.
func (s *Session) PendingAuthorize() *PendingAuthorize {
	if s.state.Authorize == nil {
		return nil
	}
	p := *s.state.Authorize
	return &p
}

// SetPendingAuthorize parks p (nil clears it).
func (s *Session) SetPendingAuthorize(p *PendingAuthorize) {
	if p != nil {
		c := *p
		c.CreatedAt = c.CreatedAt.UTC()
		p = &c
	}
	s.state.Authorize = p
	s.dirty = true
}

// PendingSecondFactor returns the password-accepted-second-factor-due step,
// or nil. Callers check Expired.
func (s *Session) PendingSecondFactor() *PendingSecondFactor {
	if s.state.SecondFactor == nil || s.rec.UserID == "" || s.rec.UserID != s.state.SecondFactor.UserID || s.Authenticated() {
		return nil
	}
	p := *s.state.SecondFactor
	return &p
}

// ClearSecondFactor abandons a pending second-factor step (and the user it
// was for, who never finished signing in).
func (s *Session) ClearSecondFactor() {
	if s.state.SecondFactor == nil {
		return
	}
	if !s.Authenticated() {
		s.switchUser("")
	}
	s.state.SecondFactor = nil
	s.dirty = true
}

// PasswordAt is the last time the signed-in user typed a correct password
// in this session (zero if never, or while not signed in), for pages that
// ask for a recent password before changing credentials.
func (s *Session) PasswordAt() time.Time {
	if !s.Authenticated() {
		return time.Time{}
	}
	return s.state.PasswordAt
}

// SetPasswordAt records a correct password for the session's user.
func (s *Session) SetPasswordAt(t time.Time) {
	s.state.PasswordAt = t.UTC()
	s.dirty = true
}

// AddClient records that the session signed in to client id; it reports
// whether that is new (the session then needs saving).
func (s *Session) AddClient(id string) bool {
	if id == "" || slices.Contains(s.state.Clients, id) {
		return false
	}
	s.state.Clients = append(s.state.Clients, id)
	if len(s.state.Clients) > maxSessionClients {
		s.state.Clients = s.state.Clients[1:]
	}
	s.dirty = true
	return true
}

// ClientsOf reads the clients a stored session signed in to (nil when its
// state does not decode: it is ending anyway).
func ClientsOf(rec store.BrowserSession) []string {
	var st State
	if json.Unmarshal(rec.State, &st) != nil {
		return nil
	}
	return st.Clients
}

// Clients are the clients the session signed in to, oldest first.
func (s *Session) Clients() []string { return slices.Clone(s.state.Clients) }

// UILocales is the remembered ui_locales ("" when none).
func (s *Session) UILocales() string { return s.state.UILocales }

// SetUILocales remembers a ui_locales value (cut to a bounded length).
func (s *Session) SetUILocales(v string) {
	if len(v) > maxUILocalesLen {
		v = v[:maxUILocalesLen]
	}
	if v == s.state.UILocales {
		return
	}
	s.state.UILocales = v
	s.dirty = true
}

// ReturnTo returns the local path to continue at after sign-in, or "".
func (s *Session) ReturnTo() string { return s.state.ReturnTo }

// SetReturnTo remembers a local path ("" clears it). Anything that is not a
// plain local path (scheme, host, "//", backslashes) is refused, so it can
// never become an open redirect.
func (s *Session) SetReturnTo(path string) {
	if path != "" && !LocalPath(path) {
		path = ""
	}
	s.state.ReturnTo = path
	s.dirty = true
}

// LocalPath reports whether p is a path on this server that is safe to
// redirect to.
func LocalPath(p string) bool {
	if len(p) == 0 || len(p) > 512 || p[0] != '/' {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// CSRFToken returns the session's CSRF token, creating one if needed. A new
// session must be saved before the token is of any use.
func (s *Session) CSRFToken() string {
	if s.state.CSRF == "" {
		s.state.CSRF = secret.RandomToken(32)
		s.dirty = true
	}
	return s.state.CSRF
}

// ValidCSRF reports whether token is this session's CSRF token. A session
// with no record has no token, so it never matches.
func (s *Session) ValidCSRF(token string) bool {
	want := s.state.CSRF
	if !s.saved || want == "" || len(token) != len(want) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// ErrNoEnrolment means no unexpired enrolment is pending for the user.
var ErrNoEnrolment = errors.New("no pending enrolment")

// SetPendingEnrolment seals secret into the session for userID.
func (m *Manager) SetPendingEnrolment(s *Session, userID, secretValue string) {
	now := m.now().UTC()
	s.state.Enrolment = &PendingEnrolment{
		UserID:    userID,
		Sealed:    m.sealer.Seal([]byte(secretValue), enrolmentAD(userID)),
		CreatedAt: now,
	}
	s.dirty = true
}

// PendingEnrolment returns the unexpired secret pending for userID.
func (m *Manager) PendingEnrolment(s *Session, userID string) (string, error) {
	p := s.state.Enrolment
	if p == nil || p.UserID != userID || userID == "" || !m.now().Before(p.CreatedAt.Add(PendingEnrolmentTTL)) {
		return "", ErrNoEnrolment
	}
	plain, err := m.sealer.Open(p.Sealed, enrolmentAD(userID))
	if err != nil {
		return "", ErrNoEnrolment
	}
	return string(plain), nil
}

// ClearPendingEnrolment forgets a pending enrolment.
func (s *Session) ClearPendingEnrolment() {
	if s.state.Enrolment != nil {
		s.state.Enrolment = nil
		s.dirty = true
	}
}

func enrolmentAD(userID string) []byte { return []byte("gatehouse session enrolment\x00" + userID) }
