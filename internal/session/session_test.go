package session_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	st    store.Store
	m     *session.Manager
	clock *clock
	key   []byte
}

func newFixture(t *testing.T, st store.Store, issuer string) *fixture {
	t.Helper()
	f := &fixture{st: st, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, key: secret.RandomBytes(secret.MasterKeyLen)}
	m, err := session.NewManager(session.Config{Store: st, MasterKey: f.key, Issuer: issuer, Now: f.clock.Now})
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	f.m = m
	return f
}

// request builds a GET carrying cookie (nil: none).
func request(cookie *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/auth/login", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return r
}

func sessionCookie(t *testing.T, rec *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			found = c
		}
	}
	if found == nil {
		t.Fatalf("no %s cookie in response; Set-Cookie: %q", name, rec.Header().Values("Set-Cookie"))
	}
	return found
}

// saved creates a session with a record (a signed-in one: a session
// without a user lives in its cookie) and returns it with its cookie.
func (f *fixture) saved(t *testing.T) (*session.Session, *http.Cookie) {
	t.Helper()
	s, err := f.m.Load(request(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	s.Authenticate("visitor", f.clock.Now(), []string{"pwd"})
	rec := httptest.NewRecorder()
	if err := f.m.Save(context.Background(), rec, s); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return s, sessionCookie(t, rec, f.m.CookieName())
}

// anonymous creates a session without a user (kept in its cookie) and
// returns it with its cookie.
func (f *fixture) anonymous(t *testing.T) (*session.Session, *http.Cookie) {
	t.Helper()
	s, err := f.m.Load(request(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	s.CSRFToken()
	rec := httptest.NewRecorder()
	if err := f.m.Save(context.Background(), rec, s); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return s, sessionCookie(t, rec, f.m.CookieName())
}

// load is one request that reads the session and changes nothing: Load,
// then Settle as the hosted pages do when the request ends.
func (f *fixture) load(t *testing.T, c *http.Cookie) *session.Session {
	t.Helper()
	s, err := f.m.Load(request(c))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := f.m.Settle(context.Background(), s); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	return s
}

func eachBackend(t *testing.T, fn func(t *testing.T, st store.Store)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open(t)) })
	}
}

func TestCookieAttributes(t *testing.T) {
	tests := []struct {
		name, issuer, cookie string
		secure               bool
	}{
		{"a plain http issuer gets a plain cookie", "http://127.0.0.1:8080", "gatehouse", false},
		{"an https issuer gets a __Host- prefixed Secure cookie", "https://login.example.com", "__Host-gatehouse", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, gormstoretest.Open(t), tt.issuer)
			if got := f.m.CookieName(); got != tt.cookie {
				t.Fatalf("CookieName = %q, want %q", got, tt.cookie)
			}
			_, c := f.saved(t)
			if c.Secure != tt.secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie attributes: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q", c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
			}
			if c.MaxAge != 0 {
				t.Errorf("cookie MaxAge = %d, want a browser-session cookie", c.MaxAge)
			}
		})
	}
}

func TestLoadAndSave(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, "http://127.0.0.1:8080")

		t.Run("a request without a cookie gets an anonymous, unsaved session", func(t *testing.T) {
			s := f.load(t, nil)
			if !s.IsNew() || s.Authenticated() || s.ID() != "" {
				t.Fatalf("IsNew=%v Authenticated=%v ID=%q", s.IsNew(), s.Authenticated(), s.ID())
			}
		})

		t.Run("a saved session comes back with its state", func(t *testing.T) {
			s, c := f.saved(t)
			s.SetPendingAuthorize(&session.PendingAuthorize{Query: "client_id=app&state=abcdefgh", ClientID: "app", CreatedAt: f.clock.Now()})
			if err := f.m.Save(context.Background(), httptest.NewRecorder(), s); err != nil {
				t.Fatal(err)
			}
			got := f.load(t, c)
			if got.IsNew() || got.ID() != s.ID() {
				t.Fatalf("loaded IsNew=%v ID=%q, want ID %q", got.IsNew(), got.ID(), s.ID())
			}
			p := got.PendingAuthorize()
			if p == nil || p.ClientID != "app" || p.Query != "client_id=app&state=abcdefgh" {
				t.Fatalf("PendingAuthorize = %+v", p)
			}
		})

		t.Run("the cookie carries neither the record id nor anything readable", func(t *testing.T) {
			s, c := f.saved(t)
			if strings.Contains(c.Value, s.ID()) {
				t.Fatal("cookie contains the record id")
			}
			rec, err := st.GetBrowserSession(context.Background(), s.ID())
			if err != nil {
				t.Fatalf("record under the session id: %v", err)
			}
			if bytes.Contains(rec.State, []byte(c.Value)) {
				t.Fatal("record contains the cookie value")
			}
		})

		t.Run("a cookie sealed with another master key is anonymous", func(t *testing.T) {
			other := newFixture(t, st, "http://127.0.0.1:8080")
			_, c := other.saved(t)
			if s := f.load(t, c); !s.IsNew() {
				t.Fatal("foreign cookie accepted")
			}
		})

		t.Run("a tampered cookie is anonymous", func(t *testing.T) {
			_, c := f.saved(t)
			b := []byte(c.Value)
			b[len(b)/2] ^= 0x01
			if b[len(b)/2] == '=' || b[len(b)/2] == 0 {
				b[len(b)/2] = 'A'
			}
			c.Value = string(b)
			if s := f.load(t, c); !s.IsNew() {
				t.Fatal("tampered cookie accepted")
			}
		})

		t.Run("a cookie whose record is gone is anonymous", func(t *testing.T) {
			s, c := f.saved(t)
			if err := st.DeleteBrowserSession(context.Background(), s.ID()); err != nil {
				t.Fatal(err)
			}
			if got := f.load(t, c); !got.IsNew() {
				t.Fatal("cookie of a deleted record accepted")
			}
		})

		t.Run("saving a session whose record was deleted meanwhile reports ErrGone", func(t *testing.T) {
			s, _ := f.saved(t)
			if err := st.DeleteBrowserSession(context.Background(), s.ID()); err != nil {
				t.Fatal(err)
			}
			s.SetReturnTo("/auth/two-factor")
			if err := f.m.Save(context.Background(), httptest.NewRecorder(), s); !errors.Is(err, session.ErrGone) {
				t.Fatalf("Save = %v, want ErrGone", err)
			}
		})
	})
}

func TestRotateAndDestroy(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, "http://127.0.0.1:8080")
		ctx := context.Background()

		t.Run("signing in rotates the id: the cookie from before is useless", func(t *testing.T) {
			s, before := f.saved(t)
			oldID, oldCSRF := s.ID(), s.CSRFToken()
			s.SetPendingAuthorize(&session.PendingAuthorize{Query: "q=1", ClientID: "app", CreatedAt: f.clock.Now()})
			s.Authenticate("alice", f.clock.Now(), []string{"pwd"})
			rec := httptest.NewRecorder()
			if err := f.m.Rotate(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
			after := sessionCookie(t, rec, f.m.CookieName())
			if s.ID() == oldID || after.Value == before.Value {
				t.Fatal("id not rotated")
			}
			if s.CSRFToken() == oldCSRF {
				t.Fatal("CSRF token survived the rotation")
			}
			if _, err := st.GetBrowserSession(ctx, oldID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("old record: err = %v, want ErrNotFound", err)
			}
			if got := f.load(t, before); !got.IsNew() || got.Authenticated() {
				t.Fatal("the pre-login cookie still names a session")
			}
			got := f.load(t, after)
			if !got.Authenticated() || got.UserID() != "alice" || got.PendingAuthorize() == nil {
				t.Fatalf("rotated session: Authenticated=%v UserID=%q pending=%v", got.Authenticated(), got.UserID(), got.PendingAuthorize())
			}
			if amr := got.AMR(); len(amr) != 1 || amr[0] != "pwd" {
				t.Fatalf("AMR = %v", amr)
			}
		})

		t.Run("logging out deletes the record and expires the cookie", func(t *testing.T) {
			s, c := f.saved(t)
			s.Authenticate("alice", f.clock.Now(), []string{"pwd"})
			rec := httptest.NewRecorder()
			if err := f.m.Rotate(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
			c = sessionCookie(t, rec, f.m.CookieName())
			id := s.ID()
			rec = httptest.NewRecorder()
			if err := f.m.Destroy(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
			if cleared := sessionCookie(t, rec, f.m.CookieName()); cleared.MaxAge >= 0 || cleared.Value != "" {
				t.Fatalf("logout cookie: MaxAge=%d Value=%q", cleared.MaxAge, cleared.Value)
			}
			if _, err := st.GetBrowserSession(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("record after logout: err = %v", err)
			}
			if got := f.load(t, c); !got.IsNew() {
				t.Fatal("cookie still works after logout")
			}
			if s.Authenticated() || !s.IsNew() {
				t.Fatal("destroyed session still signed in")
			}
		})
	})
}

func TestExpiry(t *testing.T) {
	st := gormstoretest.Open(t)
	ctx := context.Background()

	t.Run("an idle session expires and its record is deleted", func(t *testing.T) {
		f := newFixture(t, st, "http://127.0.0.1:8080")
		s, c := f.saved(t)
		f.clock.Advance(session.DefaultIdleTimeout + time.Second)
		if got := f.load(t, c); !got.IsNew() {
			t.Fatal("idle session still valid")
		}
		if _, err := st.GetBrowserSession(ctx, s.ID()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired record: err = %v", err)
		}
	})

	t.Run("using a session slides its idle expiry", func(t *testing.T) {
		f := newFixture(t, st, "http://127.0.0.1:8080")
		_, c := f.saved(t)
		for range 5 {
			f.clock.Advance(session.DefaultIdleTimeout - time.Minute)
			if got := f.load(t, c); got.IsNew() {
				t.Fatal("active session expired")
			}
		}
	})

	t.Run("a session in constant use still ends at the absolute limit", func(t *testing.T) {
		f := newFixture(t, st, "http://127.0.0.1:8080")
		_, c := f.saved(t)
		step := session.DefaultIdleTimeout / 2
		alive := time.Duration(0)
		for alive+step < session.DefaultAbsoluteTimeout {
			f.clock.Advance(step)
			alive += step
			if got := f.load(t, c); got.IsNew() {
				t.Fatalf("session ended after %v, before the absolute limit", alive)
			}
		}
		f.clock.Advance(step)
		if got := f.load(t, c); !got.IsNew() {
			t.Fatal("session outlived the absolute limit")
		}
	})

	t.Run("DeleteExpired removes expired records", func(t *testing.T) {
		f := newFixture(t, st, "http://127.0.0.1:8080")
		s, _ := f.saved(t)
		f.clock.Advance(session.DefaultIdleTimeout + time.Minute)
		if _, err := f.m.DeleteExpired(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetBrowserSession(ctx, s.ID()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired record after DeleteExpired: err = %v", err)
		}
	})
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t), "http://127.0.0.1:8080")
	s, c := f.saved(t)
	token := s.CSRFToken()
	loaded := f.load(t, c)
	other, _ := f.saved(t)
	tests := []struct {
		name  string
		sess  *session.Session
		token string
		want  bool
	}{
		{"the session's own token is accepted", loaded, token, true},
		{"an empty token is refused", loaded, "", false},
		{"a token of another session is refused", loaded, other.CSRFToken(), false},
		{"a truncated token is refused", loaded, token[:len(token)-1], false},
		{"a token with one character changed is refused", loaded, token[:len(token)-1] + "x", false},
		{"an unsaved session accepts no token", f.load(t, nil), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sess.ValidCSRF(tt.token); got != tt.want {
				t.Fatalf("ValidCSRF = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSecondFactorPending(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t), "http://127.0.0.1:8080")
	ctx := context.Background()
	s, _ := f.saved(t)
	s.BeginSecondFactor("bob", session.PendingSecondFactor{PasswordAt: f.clock.Now(), ClientID: "app", Enrolled: true})
	rec := httptest.NewRecorder()
	if err := f.m.Rotate(ctx, rec, s); err != nil {
		t.Fatal(err)
	}
	got := f.load(t, sessionCookie(t, rec, f.m.CookieName()))

	t.Run("a password without its second factor is not a sign-in", func(t *testing.T) {
		if got.Authenticated() || got.UserID() != "" || !got.AuthTime().IsZero() || got.AMR() != nil {
			t.Fatalf("Authenticated=%v UserID=%q AuthTime=%v AMR=%v", got.Authenticated(), got.UserID(), got.AuthTime(), got.AMR())
		}
		p := got.PendingSecondFactor()
		if p == nil || p.UserID != "bob" || p.ClientID != "app" || !p.Enrolled {
			t.Fatalf("PendingSecondFactor = %+v", p)
		}
	})

	t.Run("the pending step expires", func(t *testing.T) {
		p := got.PendingSecondFactor()
		if p.Expired(f.clock.Now()) {
			t.Fatal("expired at once")
		}
		if !p.Expired(f.clock.Now().Add(session.PendingSecondFactorTTL)) {
			t.Fatal("not expired after its TTL")
		}
	})

	t.Run("the record names the user so ending the user's sessions ends it too", func(t *testing.T) {
		if err := f.st.DeleteBrowserSessionsByUser(ctx, "bob", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.GetBrowserSession(ctx, got.ID()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("pending session survived: err = %v", err)
		}
	})

	t.Run("completing the second factor signs in and clears the step", func(t *testing.T) {
		s, _ := f.saved(t)
		s.BeginSecondFactor("bob", session.PendingSecondFactor{PasswordAt: f.clock.Now(), Enrolled: true})
		s.Authenticate("bob", f.clock.Now(), []string{"pwd", "otp", "mfa"})
		if !s.Authenticated() || s.PendingSecondFactor() != nil || s.UserID() != "bob" {
			t.Fatalf("Authenticated=%v pending=%v", s.Authenticated(), s.PendingSecondFactor())
		}
	})
}

func TestStepUpPending(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t), "http://127.0.0.1:8080")
	ctx := context.Background()
	signedAt := f.clock.Now()
	t.Run("only a signed-in session can owe a step-up", func(t *testing.T) {
		s, _ := f.anonymous(t)
		s.BeginStepUp(session.PendingStepUp{ClientID: "bank", ACR: "urn:gatehouse:acr:mfa", CreatedAt: signedAt})
		if s.PendingStepUp() != nil {
			t.Fatal("an anonymous session holds a step-up")
		}
	})
	s, _ := f.saved(t)
	s.Authenticate("bob", signedAt, []string{"pwd"})
	s.BeginStepUp(session.PendingStepUp{ClientID: "bank", ACR: "urn:gatehouse:acr:mfa", Enrolled: true, CreatedAt: signedAt})
	rec := httptest.NewRecorder()
	if err := f.m.Rotate(ctx, rec, s); err != nil {
		t.Fatal(err)
	}
	got := f.load(t, sessionCookie(t, rec, f.m.CookieName()))
	t.Run("the session stays signed in at its level while the step-up waits, on any process", func(t *testing.T) {
		p := got.PendingStepUp()
		if !got.Authenticated() || !slices.Equal(got.AMR(), []string{"pwd"}) || p == nil || p.UserID != "bob" || p.ClientID != "bank" || !p.Enrolled {
			t.Fatalf("Authenticated=%v AMR=%v step-up=%+v", got.Authenticated(), got.AMR(), p)
		}
		if p.Expired(signedAt) || !p.Expired(signedAt.Add(session.PendingSecondFactorTTL)) {
			t.Fatal("the step-up does not expire after its TTL")
		}
	})
	t.Run("a finished step-up raises the methods, keeps the sign-in's time and records the factor", func(t *testing.T) {
		f.clock.Advance(time.Minute)
		got.SteppedUp([]string{"pwd", "otp", "mfa"}, "totp")
		if got.PendingStepUp() != nil || !got.AuthTime().Equal(signedAt) || !slices.Equal(got.AMR(), []string{"pwd", "otp", "mfa"}) || !slices.Equal(got.Factors(), []string{"totp"}) {
			t.Fatalf("step-up=%v auth_time=%v amr=%v factors=%v", got.PendingStepUp(), got.AuthTime(), got.AMR(), got.Factors())
		}
	})
	t.Run("a new sign-in or signing out forgets the step-up and the factors", func(t *testing.T) {
		got.BeginStepUp(session.PendingStepUp{ClientID: "vault", CreatedAt: f.clock.Now()})
		got.Authenticate("bob", f.clock.Now(), []string{"pwd"})
		if got.PendingStepUp() != nil || got.Factors() != nil {
			t.Fatalf("after a new sign-in: step-up=%v factors=%v", got.PendingStepUp(), got.Factors())
		}
		got.Authenticate("bob", f.clock.Now(), []string{"pwd", "otp", "mfa"}, "phone_code")
		got.BeginStepUp(session.PendingStepUp{ClientID: "vault", CreatedAt: f.clock.Now()})
		got.SignOut()
		if got.PendingStepUp() != nil || got.Factors() != nil {
			t.Fatalf("after signing out: step-up=%v factors=%v", got.PendingStepUp(), got.Factors())
		}
	})
}

func TestPendingEnrolment(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t), "http://127.0.0.1:8080")
	ctx := context.Background()
	s, c := f.saved(t)
	s.Authenticate("carol", f.clock.Now(), []string{"pwd"})
	const seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	f.m.SetPendingEnrolment(s, "carol", seed)
	if err := f.m.Save(ctx, httptest.NewRecorder(), s); err != nil {
		t.Fatal(err)
	}

	t.Run("the secret is sealed in the record", func(t *testing.T) {
		rec, err := f.st.GetBrowserSession(ctx, s.ID())
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(rec.State, []byte(seed)) {
			t.Fatal("TOTP secret stored in the clear")
		}
	})

	t.Run("the owner gets the secret back", func(t *testing.T) {
		got, err := f.m.PendingEnrolment(f.load(t, c), "carol")
		if err != nil || got != seed {
			t.Fatalf("PendingEnrolment = %q, %v", got, err)
		}
	})

	t.Run("another user does not", func(t *testing.T) {
		if _, err := f.m.PendingEnrolment(f.load(t, c), "mallory"); !errors.Is(err, session.ErrNoEnrolment) {
			t.Fatalf("err = %v, want ErrNoEnrolment", err)
		}
	})

	t.Run("it expires", func(t *testing.T) {
		loaded := f.load(t, c)
		f.clock.Advance(session.PendingEnrolmentTTL)
		if _, err := f.m.PendingEnrolment(loaded, "carol"); !errors.Is(err, session.ErrNoEnrolment) {
			t.Fatalf("err = %v, want ErrNoEnrolment", err)
		}
	})

	t.Run("a different user signing in drops it", func(t *testing.T) {
		s, _ := f.saved(t)
		s.Authenticate("carol", f.clock.Now(), []string{"pwd"})
		f.m.SetPendingEnrolment(s, "carol", seed)
		s.Authenticate("dave", f.clock.Now(), []string{"pwd"})
		if _, err := f.m.PendingEnrolment(s, "carol"); !errors.Is(err, session.ErrNoEnrolment) {
			t.Fatalf("err = %v, want ErrNoEnrolment", err)
		}
	})
}

func TestReturnToOnlyTakesLocalPaths(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/auth/two-factor", "/auth/two-factor"},
		{"/auth/two-factor/enable?x=1", "/auth/two-factor/enable?x=1"},
		{"//evil.example/", ""},
		{"/\\evil.example/", ""},
		{"https://evil.example/", ""},
		{"javascript:alert(1)", ""},
		{"relative/path", ""},
		{"/line\nbreak", ""},
	}
	for _, tt := range tests {
		t.Run("SetReturnTo("+tt.path+") keeps "+tt.want, func(t *testing.T) {
			var s session.Session
			s.SetReturnTo(tt.path)
			if got := s.ReturnTo(); got != tt.want {
				t.Fatalf("ReturnTo = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewManagerRejectsBadConfig(t *testing.T) {
	st := gormstoretest.Open(t)
	tests := []struct {
		name string
		cfg  session.Config
	}{
		{"no store", session.Config{MasterKey: make([]byte, 32)}},
		{"a short master key", session.Config{Store: st, MasterKey: make([]byte, 16)}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			if _, err := session.NewManager(tt.cfg); err == nil {
				t.Fatal("NewManager accepted it")
			}
		})
	}
}

// TestStatementsPerRequest holds a request to one read and at most one
// write of its session record.
func TestStatementsPerRequest(t *testing.T) {
	st := gormstoretest.OpenSQLite(t)
	f := newFixture(t, st, "http://127.0.0.1:8080")
	ctx := context.Background()
	count := func(fn func()) int64 {
		before := st.Statements()
		fn()
		return st.Statements() - before
	}
	oneRequest := func(t *testing.T, c *http.Cookie, change func(s *session.Session)) int64 {
		t.Helper()
		return count(func() {
			s, err := f.m.Load(request(c))
			if err != nil {
				t.Fatal(err)
			}
			if change != nil {
				change(s)
			}
			if err := f.m.Save(ctx, httptest.NewRecorder(), s); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Settle(ctx, s); err != nil {
				t.Fatal(err)
			}
		})
	}
	_, c := f.saved(t)
	pending := &session.PendingAuthorize{Query: "q=1", ClientID: "app", CreatedAt: f.clock.Now()}

	cases := []struct {
		name    string
		advance time.Duration
		change  func(s *session.Session)
		want    int64
	}{
		{"a request that changes nothing only reads", 0, nil, 1},
		{"a change is one write", 0, func(s *session.Session) { s.SetPendingAuthorize(pending) }, 2},
		{"setting what the record already holds writes nothing", 0, func(s *session.Session) { s.SetPendingAuthorize(pending) }, 1},
		{"an idle expiry due to slide is one write", 2 * time.Minute, nil, 2},
		{"a due slide and a change together are still one write", 2 * time.Minute, func(s *session.Session) { s.SetPendingAuthorize(nil) }, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.Advance(tc.advance)
			if n := oneRequest(t, c, tc.change); n != tc.want {
				t.Errorf("%d statements, want %d", n, tc.want)
			}
		})
	}

	t.Run("signing in rotates the id in one write", func(t *testing.T) {
		s, err := f.m.Load(request(c))
		if err != nil {
			t.Fatal(err)
		}
		s.Authenticate("alice", f.clock.Now(), []string{"pwd"})
		if n := count(func() {
			if err := f.m.Rotate(ctx, httptest.NewRecorder(), s); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Settle(ctx, s); err != nil {
				t.Fatal(err)
			}
		}); n != 1 {
			t.Errorf("%d statements, want 1", n)
		}
	})
}

func TestSessionClients(t *testing.T) {
	t.Run("a client is remembered once, and another user's sign-in forgets the list", func(t *testing.T) {
		var s session.Session
		s.Authenticate("alice", time.Now(), []string{"pwd"})
		if !s.AddClient("web") || s.AddClient("web") || !s.AddClient("spa") {
			t.Fatal("AddClient did not report new clients once each")
		}
		if got := s.Clients(); len(got) != 2 || got[0] != "web" || got[1] != "spa" {
			t.Fatalf("Clients = %v", got)
		}
		s.Authenticate("alice", time.Now(), []string{"pwd", "otp"})
		if len(s.Clients()) != 2 {
			t.Fatal("the same user's step-up forgot the clients")
		}
		s.Authenticate("bob", time.Now(), []string{"pwd"})
		if got := s.Clients(); len(got) != 0 {
			t.Fatalf("bob's session still names alice's clients: %v", got)
		}
	})
}

// TestASessionWithoutAUserLivesInItsCookie: a visitor who has not signed
// in (the login page, a parked authorization request) costs no record and
// no statement; signing in moves the session to a record under a new id.
func TestASessionWithoutAUserLivesInItsCookie(t *testing.T) {
	st := gormstoretest.OpenSQLite(t)
	f := newFixture(t, st, "http://127.0.0.1:8080")
	ctx := context.Background()
	statements := func(fn func()) int64 {
		before := st.Statements()
		fn()
		return st.Statements() - before
	}
	pending := &session.PendingAuthorize{Query: "client_id=app&state=abcdefgh", ClientID: "app", RedirectURI: "https://app.example/cb", CreatedAt: f.clock.Now()}

	t.Run("parking a request and coming back with it runs no statement", func(t *testing.T) {
		var s *session.Session
		var c *http.Cookie
		if n := statements(func() {
			s, c = f.anonymous(t)
			s.SetPendingAuthorize(pending)
			rec := httptest.NewRecorder()
			if err := f.m.Save(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
			c = sessionCookie(t, rec, f.m.CookieName())
		}); n != 0 {
			t.Errorf("saving ran %d statements, want 0", n)
		}
		var got *session.Session
		if n := statements(func() { got = f.load(t, c) }); n != 0 {
			t.Errorf("loading ran %d statements, want 0", n)
		}
		if got.IsNew() || got.ID() != s.ID() || got.ID() == "" {
			t.Fatalf("loaded IsNew=%v ID=%q, want ID %q", got.IsNew(), got.ID(), s.ID())
		}
		if p := got.PendingAuthorize(); p == nil || p.Query != pending.Query || p.RedirectURI != pending.RedirectURI {
			t.Fatalf("PendingAuthorize = %+v", p)
		}
		if !got.ValidCSRF(s.CSRFToken()) || got.ValidCSRF("x"+s.CSRFToken()[1:]) {
			t.Fatal("the CSRF token did not come back as the only valid one")
		}
		if _, err := st.GetBrowserSession(ctx, s.ID()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a record exists for a session without a user: %v", err)
		}
	})

	t.Run("its cookie reads as nothing and resists tampering and other keys", func(t *testing.T) {
		s, c := f.anonymous(t)
		s.SetPendingAuthorize(pending)
		rec := httptest.NewRecorder()
		if err := f.m.Save(ctx, rec, s); err != nil {
			t.Fatal(err)
		}
		c = sessionCookie(t, rec, f.m.CookieName())
		for _, leak := range []string{"state=abcdefgh", "app.example", s.CSRFToken()} {
			if strings.Contains(c.Value, leak) {
				t.Fatalf("the cookie shows %q", leak)
			}
		}
		b := []byte(c.Value)
		b[len(b)/2] ^= 0x01
		if b[len(b)/2] == '=' || b[len(b)/2] == 0 {
			b[len(b)/2] = 'A'
		}
		if got := f.load(t, &http.Cookie{Name: c.Name, Value: string(b)}); !got.IsNew() || got.PendingAuthorize() != nil {
			t.Fatal("a tampered cookie was accepted")
		}
		other := newFixture(t, st, "http://127.0.0.1:8080")
		if got := other.load(t, c); !got.IsNew() || got.PendingAuthorize() != nil {
			t.Fatal("a cookie sealed with another master key was accepted")
		}
	})

	t.Run("it ends when idle for the idle timeout", func(t *testing.T) {
		_, c := f.anonymous(t)
		f.clock.Advance(session.DefaultIdleTimeout - time.Second)
		if got := f.load(t, c); got.IsNew() {
			t.Fatal("ended before the idle timeout")
		}
		f.clock.Advance(2 * time.Second)
		if got := f.load(t, c); !got.IsNew() {
			t.Fatal("outlived the idle timeout")
		}
	})

	t.Run("a state too large for a cookie goes to a record", func(t *testing.T) {
		s, _ := f.anonymous(t)
		big := *pending
		big.Query = "client_id=app&request=" + strings.Repeat("A", 4000)
		s.SetPendingAuthorize(&big)
		rec := httptest.NewRecorder()
		if err := f.m.Save(ctx, rec, s); err != nil {
			t.Fatal(err)
		}
		c := sessionCookie(t, rec, f.m.CookieName())
		if len(c.Value) > 4000 {
			t.Fatalf("cookie of %d bytes", len(c.Value))
		}
		if _, err := st.GetBrowserSession(ctx, s.ID()); err != nil {
			t.Fatalf("no record for the large session: %v", err)
		}
		if p := f.load(t, c).PendingAuthorize(); p == nil || p.Query != big.Query {
			t.Fatal("the large parked request did not come back")
		}
	})

	t.Run("signing in moves it to a record under a new id, and its cookie carries no user", func(t *testing.T) {
		s, before := f.anonymous(t)
		s.SetPendingAuthorize(pending)
		rec := httptest.NewRecorder()
		if err := f.m.Save(ctx, rec, s); err != nil {
			t.Fatal(err)
		}
		before = sessionCookie(t, rec, f.m.CookieName())
		oldID, oldCSRF := s.ID(), s.CSRFToken()
		s.Authenticate("alice", f.clock.Now(), []string{"pwd"})
		rec = httptest.NewRecorder()
		if n := statements(func() {
			if err := f.m.Rotate(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
		}); n != 1 {
			t.Errorf("signing in ran %d statements, want 1 (the record's INSERT)", n)
		}
		if s.ID() == oldID || s.CSRFToken() == oldCSRF {
			t.Fatal("the id or the CSRF token survived the sign-in")
		}
		if _, err := st.GetBrowserSession(ctx, s.ID()); err != nil {
			t.Fatalf("no record after the sign-in: %v", err)
		}
		got := f.load(t, sessionCookie(t, rec, f.m.CookieName()))
		if !got.Authenticated() || got.UserID() != "alice" || got.PendingAuthorize() == nil {
			t.Fatalf("signed-in session: Authenticated=%v UserID=%q pending=%v", got.Authenticated(), got.UserID(), got.PendingAuthorize())
		}
		if old := f.load(t, before); old.Authenticated() || old.UserID() != "" || old.ValidCSRF(s.CSRFToken()) {
			t.Fatal("the cookie from before the sign-in carries the sign-in")
		}
	})

	t.Run("destroying it expires the cookie and deletes nothing", func(t *testing.T) {
		s, _ := f.anonymous(t)
		rec := httptest.NewRecorder()
		if n := statements(func() {
			if err := f.m.Destroy(ctx, rec, s); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("destroying ran %d statements", n)
		}
		if c := sessionCookie(t, rec, f.m.CookieName()); c.MaxAge >= 0 || c.Value != "" {
			t.Fatalf("cookie after Destroy: MaxAge=%d Value=%q", c.MaxAge, c.Value)
		}
	})
}
