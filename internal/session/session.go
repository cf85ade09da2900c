package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Defaults for Config.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
)

// cookieBase is the cookie name; under https it gains the __Host- prefix,
// which browsers only accept with Secure, Path=/ and no Domain, so a
// sibling subdomain cannot plant or overwrite it.
const cookieBase = "gatehouse"

// ErrGone means the session record disappeared while the request was being
// handled (a logout in another tab, the user disabled, the password changed).
var ErrGone = errors.New("browser session has ended")

// Config for NewManager.
type Config struct {
	Store     store.Store
	MasterKey []byte // the master secret; cookie keys are derived from it
	// Issuer is the public base URL. An https issuer makes the cookie
	// Secure and __Host- prefixed.
	Issuer          string
	IdleTimeout     time.Duration // default DefaultIdleTimeout
	AbsoluteTimeout time.Duration // default DefaultAbsoluteTimeout
	Now             func() time.Time
}

// Manager loads, saves, rotates and destroys browser sessions.
type Manager struct {
	store    store.Store
	cookies  *cookieStore
	name     string
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
	sealer   *secret.Sealer
}

// NewManager returns a Manager for cfg.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("session: no store")
	}
	if len(cfg.MasterKey) != secret.MasterKeyLen {
		return nil, fmt.Errorf("session: master key must be %d bytes, got %d", secret.MasterKeyLen, len(cfg.MasterKey))
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AbsoluteTimeout <= 0 {
		cfg.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if cfg.IdleTimeout > cfg.AbsoluteTimeout {
		cfg.IdleTimeout = cfg.AbsoluteTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	secure := strings.HasPrefix(strings.ToLower(cfg.Issuer), "https://")
	name := cookieBase
	if secure {
		name = "__Host-" + cookieBase
	}
	codec := securecookie.New(
		secret.Derive(cfg.MasterKey, secret.PurposeCookieHash),
		secret.Derive(cfg.MasterKey, secret.PurposeCookieBlock),
	)
	// The cookie is written once per session id (creation, rotation), so
	// its embedded timestamp is the id's birth: past the absolute lifetime
	// it no longer decodes, whatever the record says.
	codec.MaxAge(int(cfg.AbsoluteTimeout / time.Second))
	codec.SetSerializer(securecookie.NopEncoder{})
	sealer, err := secret.NewSealer(secret.Derive(cfg.MasterKey, secret.PurposeAtRest))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return &Manager{
		store: cfg.Store,
		cookies: &cookieStore{
			codecs: []securecookie.Codec{codec},
			options: sessions.Options{
				Path:     "/",
				MaxAge:   0, // a browser-session cookie; the server enforces expiry
				Secure:   secure,
				HttpOnly: true,
				SameSite: http.SameSiteLaxMode,
			},
		},
		name:     name,
		idle:     cfg.IdleTimeout,
		absolute: cfg.AbsoluteTimeout,
		now:      cfg.Now,
		sealer:   sealer,
	}, nil
}

// CookieName is the name of the session cookie.
func (m *Manager) CookieName() string { return m.name }

// Session is one browser's session during one request. Change it through
// its methods, then call Manager.Save (or Rotate) before writing the body,
// and Manager.Settle when the request ends.
type Session struct {
	token string // the random value the cookie carries; "" until first saved
	rec   store.BrowserSession
	state State
	saved bool // the record exists in the store, or the cookie (inCookie)
	// inCookie: the session has no user and lives whole in its sealed
	// cookie, not in a record (see cookieSession).
	inCookie bool
	dirty    bool
	// touch: the idle expiry is due to slide (Load found the record's last
	// write older than the touch interval). The request's one write (Save,
	// Rotate or Settle) carries it.
	touch bool
	// stored is the record as the store holds it (as loaded or last
	// written), so that a Save that changes nothing writes nothing.
	stored store.BrowserSession
}

// ID is the record id (the SHA-256 of the cookie value), "" for a session
// that was never saved. It is safe to log and to put in tokens' sid.
func (s *Session) ID() string { return s.rec.ID }

// IsNew reports whether the session has no record yet.
func (s *Session) IsNew() bool { return !s.saved }

// Authenticated reports whether a user completed sign-in (every required
// factor) in this session.
func (s *Session) Authenticated() bool { return s.rec.UserID != "" && !s.rec.AuthTime.IsZero() }

// UserID is the signed-in user, "" unless Authenticated.
func (s *Session) UserID() string {
	if !s.Authenticated() {
		return ""
	}
	return s.rec.UserID
}

// AuthTime is when the user completed sign-in (zero unless Authenticated).
func (s *Session) AuthTime() time.Time {
	if !s.Authenticated() {
		return time.Time{}
	}
	return s.rec.AuthTime
}

// AMR lists the authentication methods of the sign-in (pwd, otp, mfa).
func (s *Session) AMR() []string {
	if !s.Authenticated() {
		return nil
	}
	return append([]string(nil), s.rec.AMR...)
}

// ExpiresAt is when the session ends unless used again.
func (s *Session) ExpiresAt() time.Time { return s.rec.ExpiresAt }

// Authenticate marks the user signed in with the given methods, ending any
// pending second-factor step. Call Manager.Rotate next: a new sign-in always
// gets a new id.
func (s *Session) Authenticate(userID string, at time.Time, amr []string, factors ...string) {
	s.switchUser(userID)
	s.rec.AuthTime = at.UTC()
	s.rec.AMR = append([]string(nil), amr...)
	s.state.Factors = nil
	for _, f := range factors {
		if f != "" {
			s.state.Factors = append(s.state.Factors, f)
		}
	}
	s.state.SecondFactor = nil
	s.state.StepUp = nil
	s.dirty = true
}

// BeginSecondFactor records that userID's password was accepted and a
// second factor is still needed. The session is not Authenticated until
// Authenticate is called. Call Manager.Rotate next.
func (s *Session) BeginSecondFactor(userID string, p PendingSecondFactor) {
	s.switchUser(userID)
	s.rec.AuthTime = time.Time{}
	s.rec.AMR = nil
	s.state.StepUp = nil
	s.state.Factors = nil
	p.UserID = userID
	p.PasswordAt = p.PasswordAt.UTC()
	s.state.SecondFactor = &p
	s.state.PasswordAt = p.PasswordAt
	s.dirty = true
}

// switchUser forgets what belonged to the previous user of the browser.
func (s *Session) switchUser(userID string) {
	if s.rec.UserID != userID && userID != "" {
		// The clients signed in to were the previous user's: a later
		// logout must not name this user to them.
		s.state.Clients = nil
	}
	if s.rec.UserID != userID {
		s.state.Enrolment = nil
		s.state.PasswordAt = time.Time{}
	}
	s.rec.UserID = userID
}

// SignOut forgets the user but keeps the session (and what it parked).
func (s *Session) SignOut() {
	s.switchUser("")
	s.rec.AuthTime = time.Time{}
	s.rec.AMR = nil
	s.state.SecondFactor = nil
	s.state.StepUp = nil
	s.state.Factors = nil
	s.dirty = true
}

func hashID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Load returns the browser's session. A missing, undecodable, unknown or
// expired cookie gives a new anonymous session; only a storage failure is
// an error.
func (m *Manager) Load(r *http.Request) (*Session, error) {
	ctx := r.Context()
	gs, err := m.cookies.New(r, m.name)
	if err != nil || gs.IsNew || gs.ID == "" {
		return m.anonymous(), nil
	}
	if gs.ID[0] == '{' {
		// A session id is a base64url token; JSON is a cookieSession.
		return m.loadCookieSession(gs.ID), nil
	}
	rec, err := m.store.GetBrowserSession(ctx, hashID(gs.ID))
	if errors.Is(err, store.ErrNotFound) {
		return m.anonymous(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load browser session: %w", err)
	}
	now := m.now().UTC()
	if !now.Before(rec.ExpiresAt) || !now.Before(rec.CreatedAt.Add(m.absolute)) {
		if err := m.store.DeleteBrowserSession(ctx, rec.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("delete expired browser session: %w", err)
		}
		return m.anonymous(), nil
	}
	s := &Session{token: gs.ID, rec: rec, saved: true, stored: rec}
	if len(rec.State) > 0 {
		if err := json.Unmarshal(rec.State, &s.state); err != nil {
			// Unreadable state is a record we did not write (or an
			// incompatible older one): start over rather than trust it.
			if err := m.store.DeleteBrowserSession(ctx, rec.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("delete unreadable browser session: %w", err)
			}
			return m.anonymous(), nil
		}
	}
	// Slide the idle expiry, but write at most once a minute per session,
	// and not here: the request's own write (Save, Rotate) carries it, or
	// Settle when the request wrote nothing. A request reads the record once
	// and writes it at most once.
	if now.Sub(rec.UpdatedAt) >= m.touchInterval() {
		s.touch = true
	}
	return s, nil
}

// Settle ends a request's use of s: it writes the sliding of the idle
// expiry that Load found due, when no Save or Rotate has written it. It
// writes nothing otherwise, so it is cheap to call at the end of every
// request that loaded a session. ErrGone: the record was deleted meanwhile.
func (m *Manager) Settle(ctx context.Context, s *Session) error {
	if s == nil || !s.saved || s.inCookie || !s.touch {
		return nil
	}
	return m.save(ctx, s)
}

func (m *Manager) touchInterval() time.Duration {
	return min(time.Minute, m.idle/10)
}

func (m *Manager) anonymous() *Session { return &Session{} }

func (m *Manager) expiry(s *Session, now time.Time) time.Time {
	return minTime(now.Add(m.idle), s.rec.CreatedAt.Add(m.absolute))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Save writes the session: a new one gets a record and a cookie, a changed
// one is updated. A session without a user is kept in its cookie instead,
// when it fits. It returns ErrGone when the record was deleted meanwhile.
func (m *Manager) Save(ctx context.Context, w http.ResponseWriter, s *Session) error {
	if s.rec.UserID == "" && (!s.saved || s.inCookie) {
		kept, err := m.saveCookieSession(w, s)
		if kept || err != nil {
			return err
		}
	}
	if s.inCookie {
		// It gained a user (Rotate is what callers should have used), or
		// outgrew its cookie: from now on a record holds it.
		s.saved, s.inCookie = false, false
	}
	if !s.saved {
		return m.create(ctx, w, s, nil)
	}
	return m.save(ctx, s)
}

// cookieSession is a session without a user, kept whole in its cookie,
// which the cookie codec encrypts and signs, rather than in a record: a
// visitor who has not signed in yet (the login page, a parked
// authorization request) costs no row and no round trip. Token is the
// random value whose hash is the session's ID, for the challenges and codes
// bound to it. Signing in always moves the session to a record under a new
// id (Rotate), so what can be revoked lives server-side; a replayed
// cookie of this kind carries no user.
type cookieSession struct {
	Token     string    `json:"t"`
	CreatedAt time.Time `json:"c"`
	UpdatedAt time.Time `json:"u"`
	State     State     `json:"s"`
}

// maxCookieSession bounds the encoded cookie value (browsers keep 4 KiB per
// cookie, name and attributes included); a larger state (a long parked
// request) goes to a record.
const maxCookieSession = 3800

func (m *Manager) loadCookieSession(raw string) *Session {
	var cs cookieSession
	if json.Unmarshal([]byte(raw), &cs) != nil || cs.Token == "" {
		return m.anonymous()
	}
	s := &Session{token: cs.Token, state: cs.State, saved: true, inCookie: true, rec: store.BrowserSession{
		ID: hashID(cs.Token), CreatedAt: cs.CreatedAt.UTC(), UpdatedAt: cs.UpdatedAt.UTC(),
	}}
	now := m.now().UTC()
	s.rec.ExpiresAt = m.expiry(s, cs.UpdatedAt)
	if !now.Before(s.rec.ExpiresAt) {
		return m.anonymous()
	}
	return s
}

// saveCookieSession writes s, which has no user, into its cookie; kept is
// false when it does not fit (nothing was written then).
func (m *Manager) saveCookieSession(w http.ResponseWriter, s *Session) (kept bool, err error) {
	if s.saved && !s.dirty {
		return true, nil
	}
	now := m.now().UTC()
	cs := cookieSession{Token: s.token, CreatedAt: s.rec.CreatedAt, UpdatedAt: now, State: s.state}
	if !s.saved {
		// A new session: a fresh id, and a fresh CSRF token as create
		// gives one.
		cs.Token, cs.CreatedAt = secret.RandomToken(32), now
		cs.State.CSRF = secret.RandomToken(32)
	}
	payload, err := json.Marshal(cs)
	if err != nil {
		return false, fmt.Errorf("encode session state: %w", err)
	}
	encoded, err := securecookie.EncodeMulti(m.name, payload, m.cookies.codecs...)
	if err != nil || len(encoded) > maxCookieSession {
		return false, nil
	}
	http.SetCookie(w, sessions.NewCookie(m.name, encoded, &m.cookies.options))
	s.token, s.state = cs.Token, cs.State
	s.rec = store.BrowserSession{ID: hashID(cs.Token), CreatedAt: cs.CreatedAt, UpdatedAt: now}
	s.rec.ExpiresAt = m.expiry(s, now)
	s.saved, s.inCookie, s.dirty = true, true, false
	return true, nil
}

func (m *Manager) save(ctx context.Context, s *Session) error {
	if !s.dirty && !s.touch {
		return nil
	}
	state, err := json.Marshal(s.state)
	if err != nil {
		return fmt.Errorf("encode session state: %w", err)
	}
	if !s.touch && s.unchanged(state) {
		// Setters mark the session dirty without comparing; the record
		// already says all this.
		s.dirty = false
		return nil
	}
	now := m.now().UTC()
	rec := s.rec
	rec.State = state
	rec.UpdatedAt = now
	rec.ExpiresAt = m.expiry(s, now)
	if err := m.store.UpdateBrowserSession(ctx, rec); errors.Is(err, store.ErrNotFound) {
		return ErrGone
	} else if err != nil {
		return fmt.Errorf("update browser session: %w", err)
	}
	s.rec = rec
	s.stored = rec
	s.dirty, s.touch = false, false
	return nil
}

// unchanged reports whether writing s with state would store what the
// record already holds.
func (s *Session) unchanged(state []byte) bool {
	return bytes.Equal(state, s.stored.State) && s.rec.UserID == s.stored.UserID &&
		s.rec.AuthTime.Equal(s.stored.AuthTime) && slices.Equal(s.rec.AMR, s.stored.AMR)
}

// create stores s under a fresh random id and sets the cookie. When
// replacing is set, that old record becomes the new one (its id is gone).
func (m *Manager) create(ctx context.Context, w http.ResponseWriter, s *Session, replacing *string) error {
	now := m.now().UTC()
	token := secret.RandomToken(32)
	rec := s.rec
	rec.ID = hashID(token)
	rec.CreatedAt = now
	rec.UpdatedAt = now
	st := s.state
	// A new id gets a new CSRF token: one seen before login (on a shared
	// machine, in a proxy log) is worth nothing after it.
	st.CSRF = secret.RandomToken(32)
	state, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode session state: %w", err)
	}
	rec.State = state
	next := &Session{token: token, rec: rec, state: st, saved: true}
	next.rec.ExpiresAt = m.expiry(next, now)
	next.stored = next.rec
	// A rotation moves the record to the new id in one statement; a record
	// deleted meanwhile (a logout in another tab) is created afresh, as a
	// session without one would be.
	replaced := false
	if replacing != nil && *replacing != "" {
		switch err := m.store.ReplaceBrowserSession(ctx, *replacing, next.rec); {
		case err == nil:
			replaced = true
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("rotate browser session: %w", err)
		}
	}
	if !replaced {
		if err := m.store.CreateBrowserSession(ctx, next.rec); err != nil {
			return fmt.Errorf("create browser session: %w", err)
		}
	}
	if err := m.setCookie(w, token, false); err != nil {
		return err
	}
	*s = *next
	return nil
}

// Rotate gives the session a new id (and CSRF token) and deletes the old
// record, so a cookie captured before a sign-in is useless after it. Call it
// after Authenticate or BeginSecondFactor.
func (m *Manager) Rotate(ctx context.Context, w http.ResponseWriter, s *Session) error {
	old := ""
	if s.saved && !s.inCookie {
		old = s.rec.ID
	}
	return m.create(ctx, w, s, &old)
}

// Destroy deletes the session record and the cookie. s becomes anonymous.
func (m *Manager) Destroy(ctx context.Context, w http.ResponseWriter, s *Session) error {
	if s.saved && !s.inCookie {
		if err := m.store.DeleteBrowserSession(ctx, s.rec.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete browser session: %w", err)
		}
	}
	*s = Session{}
	return m.setCookie(w, "", true)
}

// DeleteExpired removes expired records; run it now and then.
func (m *Manager) DeleteExpired(ctx context.Context) (int64, error) {
	n, err := m.store.DeleteExpiredBrowserSessions(ctx, m.now().UTC())
	if err != nil {
		return 0, fmt.Errorf("delete expired browser sessions: %w", err)
	}
	return n, nil
}

func (m *Manager) setCookie(w http.ResponseWriter, token string, remove bool) error {
	gs := sessions.NewSession(m.cookies, m.name)
	opts := m.cookies.options
	gs.Options = &opts
	gs.ID = token
	if remove {
		gs.Options.MaxAge = -1
	}
	if err := m.cookies.Save(nil, w, gs); err != nil {
		return fmt.Errorf("write session cookie: %w", err)
	}
	return nil
}

// cookieStore is a gorilla/sessions Store whose sessions carry nothing but
// their ID (the random token); everything else lives in the server-side
// record, so the cookie can be neither read nor replayed after the record is
// gone.
type cookieStore struct {
	codecs  []securecookie.Codec
	options sessions.Options
}

var _ sessions.Store = (*cookieStore)(nil)

func (c *cookieStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(c, name)
}

func (c *cookieStore) New(r *http.Request, name string) (*sessions.Session, error) {
	gs := sessions.NewSession(c, name)
	opts := c.options
	gs.Options = &opts
	gs.IsNew = true
	ck, err := r.Cookie(name)
	if err != nil {
		return gs, nil
	}
	var raw []byte
	if err := securecookie.DecodeMulti(name, ck.Value, &raw, c.codecs...); err != nil {
		return gs, err
	}
	gs.ID = string(raw)
	gs.IsNew = false
	return gs, nil
}

func (c *cookieStore) Save(_ *http.Request, w http.ResponseWriter, gs *sessions.Session) error {
	if gs.Options.MaxAge < 0 {
		http.SetCookie(w, sessions.NewCookie(gs.Name(), "", gs.Options))
		return nil
	}
	encoded, err := securecookie.EncodeMulti(gs.Name(), []byte(gs.ID), c.codecs...)
	if err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(gs.Name(), encoded, gs.Options))
	return nil
}
