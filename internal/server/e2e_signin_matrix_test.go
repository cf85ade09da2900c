package server

// One matrix over the sign-in engine: every factor (TOTP, SMS code, e-mail
// code, recovery code, and a factor of the embedding program's own) on
// every surface (the hosted pages, the JSON sign-in API, the password grant
// with its mfa-otp continuation) for every outcome (success, wrong answer,
// replayed answer, expired sign-in, locked out), on every backend. The
// surfaces are adapters over one engine, so each cell must come out the
// same on all three: accepted with the same amr, or refused.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// hwToken is a factor of the embedding program's own, registered through
// Deps.Factors: a hardware token that types "hwk-<user>-<n>", each value
// good once. It offers itself to users whose id starts with "hw-".
type hwToken struct {
	mu   sync.Mutex
	used map[string]bool
}

const hwStrategy = "hwtoken"

func (*hwToken) Strategy() string { return hwStrategy }

func (*hwToken) Describe() signin.Description {
	return signin.Description{Label: "Security token", Prompt: "Press your security token and paste what it types.", Input: signin.InputText}
}

func (*hwToken) Offers(_ context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	if !strings.HasPrefix(s.User.ID, "hw-") {
		return nil, nil
	}
	return []signin.Offer{{Strategy: hwStrategy}}, nil
}

func (*hwToken) Prepare(context.Context, *signin.SignIn, string) (signin.Prepared, error) {
	return signin.Prepared{}, signin.ErrNotPreparable
}

func (f *hwToken) Attempt(_ context.Context, s *signin.SignIn, code string) (signin.Proof, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasPrefix(code, "hwk-"+s.User.ID+"-") || f.used[code] {
		return signin.Proof{}, signin.ErrInvalidCode
	}
	f.used[code] = true
	return signin.Proof{AMR: []string{"hwk"}}, nil
}

// offsetClock is the server's clock: real time plus an offset a test moves.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *offsetClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// matrixSuite is one server with the hwtoken factor, a moveable clock, a
// gateway for SMS and e-mail codes, and the i5 clients (mobile: password
// grant and sign-in API; mywebapp: the hosted pages).
type matrixSuite struct {
	*i5Suite
	clock *offsetClock
	seq   atomic.Int64
}

func newMatrixSuite(t *testing.T, st store.Store, key []byte) *matrixSuite {
	t.Helper()
	m := &matrixSuite{clock: &offsetClock{}}
	s := &i5Suite{gw: gateway{newHookReceiver(t, false)}}
	hw := &hwToken{used: map[string]bool{}}
	s.app = startAppWithDeps(t, st, key, func(d *Deps) {
		d.Now = m.clock.Now
		d.Factors = []signin.Factor{hw}
	}, func(c *config.Config) { c.Webhook.AllowPrivate = true })
	hook := "  webhook:\n    endpoint: '" + s.gw.srv.URL + "/codes'\n    timeout: 2000\n"
	putResource(t, s.app, "/AuthConfig/default", "twoFactor:\n  issuerName: "+i5Issuer+"\n"+hook)
	putResource(t, s.app, "/Client/mobile", passwordClientYAML)
	putResource(t, s.app, "/Client/mywebapp", webClientYAML)
	m.i5Suite = s
	return m
}

// The factors of the matrix and the API strategy of each.
var matrixFactors = []struct{ name, strategy string }{
	{"totp", signin.StrategyTOTP},
	{"sms", signin.StrategyPhoneCode},
	{"email", signin.StrategyEmailCode},
	{"recovery", signin.StrategyBackupCode},
	{"custom", hwStrategy},
}

// factorUser is a user of one factor and how to answer for it.
type factorUser struct {
	id, factor, strategy string
	dest                 string         // sms/email: where codes go
	totp                 *authenticator // totp and recovery
	hwN                  int
	recoveryN            int
}

func (m *matrixSuite) newUser(t *testing.T, factor, strategy string) *factorUser {
	t.Helper()
	n := m.seq.Add(1)
	u := &factorUser{id: fmt.Sprintf("mx-%s-%d", factor, n), factor: factor, strategy: strategy}
	switch factor {
	case "totp", "recovery":
		u.totp = m.totpUser(t, u.id)
	case "sms":
		u.dest = fmt.Sprintf("+1415556%04d", n)
		m.smsUser(t, u.id, u.dest)
	case "email":
		u.dest = u.id + "@example.com"
		m.user(t, u.id, "emailVerified: true\n")
		r := callAPI(t, m.app, http.MethodPost, "/auth/mfa/email", m.bearer(t, u.id), map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
	case "custom":
		u.id = fmt.Sprintf("hw-%d", n)
		m.user(t, u.id, "")
	}
	return u
}

// answer is a right answer for u now; sent is the code the sign-in's
// prepare step delivered (sms/email).
func (u *factorUser) answer(t *testing.T, sent string) string {
	t.Helper()
	switch u.factor {
	case "totp":
		return u.totp.next(t)
	case "recovery":
		u.recoveryN++
		return u.totp.recovery[u.recoveryN-1]
	case "custom":
		u.hwN++
		return fmt.Sprintf("hwk-%s-%d", u.id, u.hwN)
	}
	return sent
}

func (u *factorUser) wrong(t *testing.T, sent string) string {
	t.Helper()
	switch u.factor {
	case "totp":
		return wrongCode(t, u.totp.secret)
	case "recovery":
		return "zzzzz-zzzzz"
	case "custom":
		return "nope"
	}
	if sent == "000000" {
		return "111111"
	}
	return "000000"
}

// outcome is what a surface made of an answer.
type outcome struct {
	ok  bool
	amr []string
}

// flow is one sign-in in progress on one surface, past the password and
// the prepare step.
type flow interface {
	try(t *testing.T, answer string) outcome
	sent() string // the code delivered for this sign-in ("" for none)
}

var matrixSurfaces = []string{"hosted", "api", "grant"}

func (m *matrixSuite) begin(t *testing.T, surface string, u *factorUser) flow {
	t.Helper()
	n := m.gw.mark()
	var f flow
	switch surface {
	case "hosted":
		l := newOAuthLogin(m.app, "mywebapp")
		b := browserFor(t, m.app)
		p := passwordStep(t, b, l.URL, u.id)
		expectCodePrompt(t, p)
		f = &hostedFlow{l: l, b: b, p: p}
	case "api":
		token := m.mfaToken(t, "mobile", u.id)
		if u.dest != "" {
			r := callAPI(t, m.app, http.MethodPost, "/auth/sign-in/prepare", "", map[string]any{
				"client_id": "mobile", "client_secret": i5Secret, "mfa_token": token, "strategy": u.strategy,
			})
			wantStatus(t, r, http.StatusOK, "")
		}
		f = &apiFlow{m: m, token: token, strategy: u.strategy}
	case "grant":
		r := m.password(t, "mobile", u.id, url.Values{"scope": {"openid"}})
		wantStatus(t, r, http.StatusForbidden, "mfa_required")
		f = &grantFlow{m: m, token: r.str("mfa_token")}
	}
	if u.dest != "" {
		f = withSent{f, m.gw.codeTo(t, n, u.dest)}
	}
	return f
}

type withSent struct {
	flow
	code string
}

func (w withSent) sent() string { return w.code }

type hostedFlow struct {
	l oauthLogin
	b *browser
	p page
}

func (f *hostedFlow) sent() string { return "" }

func (f *hostedFlow) try(t *testing.T, answer string) outcome {
	t.Helper()
	p := submitCode(t, f.b, f.p, answer)
	if p.status >= 500 {
		t.Fatalf("the code page answered %d:\n%s", p.status, p.body)
	}
	if p.location != "" {
		return outcome{ok: true, amr: f.l.exchange(t, toClient(t, f.b, p)).AMR}
	}
	if p.url.Path == pathTwoFactorPrompt {
		expectRefused(t, p, "code", "Invalid code", "a refused answer")
		f.p = p
		return outcome{}
	}
	if p.url.Path != "/auth/login" {
		t.Fatalf("after the code the browser is at %s (status %d):\n%s", p.url, p.status, p.body)
	}
	// The sign-in expired: back to the password.
	return outcome{}
}

type apiFlow struct {
	m               *matrixSuite
	token, strategy string
}

func (f *apiFlow) sent() string { return "" }

func (f *apiFlow) try(t *testing.T, answer string) outcome {
	t.Helper()
	r := callAPI(t, f.m.app, http.MethodPost, "/auth/sign-in/attempt", "", map[string]any{
		"client_id": "mobile", "client_secret": i5Secret, "mfa_token": f.token,
		"strategy": f.strategy, "code": answer, "scope": "openid",
	})
	switch {
	case r.status == http.StatusOK:
		return outcome{ok: true, amr: idTokenAMR(t, f.m.app, r)}
	case r.status >= 500 || r.status < 400:
		t.Fatalf("attempt answered %d %s", r.status, r.raw)
	}
	return outcome{}
}

type grantFlow struct {
	m     *matrixSuite
	token string
}

func (f *grantFlow) sent() string { return "" }

func (f *grantFlow) try(t *testing.T, answer string) outcome {
	t.Helper()
	r := tokenRequest(t, f.m.app, "mobile", i5Secret, url.Values{
		"grant_type": {"urn:gatehouse:grant-type:mfa-otp"}, "mfa_token": {f.token}, "otp": {answer}, "scope": {"openid"},
	})
	switch {
	case r.status == http.StatusOK:
		return outcome{ok: true, amr: idTokenAMR(t, f.m.app, r)}
	case r.status != http.StatusBadRequest || r.str("error") != "invalid_grant":
		t.Fatalf("the mfa-otp grant answered %d %s, want tokens or invalid_grant", r.status, r.raw)
	}
	return outcome{}
}

func wantAMRFor(factor string) []string {
	if factor == "custom" {
		return []string{"pwd", "hwk", "mfa"}
	}
	return []string{"pwd", "otp", "mfa"}
}

// run plays one outcome for u on surface and returns what the last answer
// came to.
func (m *matrixSuite) run(t *testing.T, surface, outcomeName string, u *factorUser) outcome {
	t.Helper()
	f := m.begin(t, surface, u)
	switch outcomeName {
	case "success":
		return f.try(t, u.answer(t, f.sent()))
	case "wrong answer":
		return f.try(t, u.wrong(t, f.sent()))
	case "replayed answer":
		first := u.answer(t, f.sent())
		if o := f.try(t, first); !o.ok {
			t.Fatalf("the first use of the answer was refused")
		}
		return m.begin(t, surface, u).try(t, first)
	case "expired sign-in":
		answer := u.answer(t, f.sent())
		m.clock.Advance(11 * time.Minute)
		defer m.clock.Advance(-11 * time.Minute)
		return f.try(t, answer)
	case "locked out":
		for i := range 5 {
			if o := f.try(t, u.wrong(t, f.sent())); o.ok {
				t.Fatalf("wrong answer %d was accepted", i+1)
			}
		}
		return f.try(t, u.answer(t, f.sent()))
	}
	t.Fatalf("unknown outcome %q", outcomeName)
	return outcome{}
}

func TestSignInMatrixEveryFactorOnEverySurface(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	outcomes := []string{"success", "wrong answer", "replayed answer", "expired sign-in", "locked out"}
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			m := newMatrixSuite(t, be.Open(t), secret.RandomBytes(32))
			for _, fc := range matrixFactors {
				for _, oc := range outcomes {
					got := map[string]outcome{}
					for _, surface := range matrixSurfaces {
						t.Run(fmt.Sprintf("%s, %s, %s", fc.name, oc, surface), func(t *testing.T) {
							got[surface] = m.run(t, surface, oc, m.newUser(t, fc.name, fc.strategy))
						})
					}
					t.Run(fmt.Sprintf("%s, %s: every surface agrees", fc.name, oc), func(t *testing.T) {
						for _, surface := range matrixSurfaces {
							o, ran := got[surface]
							switch {
							case !ran:
								t.Errorf("%s did not finish", surface)
							case oc == "success" && (!o.ok || !slices.Equal(o.amr, wantAMRFor(fc.name))):
								t.Errorf("%s: accepted=%v amr=%v, want accepted with %v", surface, o.ok, o.amr, wantAMRFor(fc.name))
							case oc != "success" && o.ok:
								t.Errorf("%s accepted it (amr %v); want refused", surface, o.amr)
							}
						}
					})
				}
			}
		})
	}
}

// A sign-in begun on one process finishes on another over the same
// database, and the same step taken on both succeeds once: its state is in
// the database, not in either process.
func TestSignInAcrossTwoProcesses(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := be.Open(t)
			key := secret.RandomBytes(32)
			a := newMatrixSuite(t, st, key)
			b := &matrixSuite{i5Suite: &i5Suite{app: startAppWithKey(t, st, key), gw: a.gw}, clock: a.clock}

			t.Run("the JSON API: begun on one, attempted on the other, the same attempt again on the first is refused", func(t *testing.T) {
				u := a.newUser(t, "totp", signin.StrategyTOTP)
				token := a.mfaToken(t, "mobile", u.id)
				code := u.totp.next(t)
				attempt := func(app *testApp) apiResp {
					return callAPI(t, app, http.MethodPost, "/auth/sign-in/attempt", "", map[string]any{
						"client_id": "mobile", "client_secret": i5Secret, "mfa_token": token, "strategy": "totp", "code": code,
					})
				}
				wantTokens(t, attempt(b.app))
				if r := attempt(a.app); r.status < 400 || r.status >= 500 {
					t.Fatalf("the replay on the first process answered %d %s", r.status, r.raw)
				}
			})

			t.Run("the password grant: mfa_token from one, the mfa-otp grant on the other, once", func(t *testing.T) {
				u := a.newUser(t, "sms", signin.StrategyPhoneCode)
				n := a.gw.mark()
				r := a.password(t, "mobile", u.id, nil)
				wantStatus(t, r, http.StatusForbidden, "mfa_required")
				code := a.gw.codeTo(t, n, u.dest)
				form := url.Values{"grant_type": {"urn:gatehouse:grant-type:mfa-otp"}, "mfa_token": {r.str("mfa_token")}, "otp": {code}}
				wantTokens(t, tokenRequest(t, b.app, "mobile", i5Secret, form))
				wantStatus(t, tokenRequest(t, a.app, "mobile", i5Secret, form), http.StatusBadRequest, "invalid_grant")
			})

			t.Run("the hosted pages: the password on one, the code on the other", func(t *testing.T) {
				u := a.newUser(t, "totp", signin.StrategyTOTP)
				l := newOAuthLogin(a.app, "mywebapp")
				br := browserFor(t, a.app)
				p := passwordStep(t, br, l.URL, u.id)
				expectCodePrompt(t, p)
				target, form := formRequest(t, p, "code", url.Values{"code": {u.totp.next(t)}})
				target = strings.Replace(target, a.app.URL, b.app.URL, 1)
				done := br.post(target, form)
				if strings.HasPrefix(done.location, "/auth/authorize?") {
					// The browser stops at redirects to another host:port.
					done = br.get(b.app.URL + done.location)
				}
				if !strings.HasPrefix(done.location, tfRedirectURI) {
					t.Fatalf("the code on the second process did not finish the sign-in: %s (status %d, location %q):\n%s",
						done.url, done.status, done.location, done.body)
				}
				back, _ := url.Parse(done.location)
				expectAMR(t, l.exchange(t, back), "pwd", "otp", "mfa")
				again := br.post(strings.Replace(target, b.app.URL, a.app.URL, 1), form)
				if again.location != "" || again.status >= 500 {
					t.Fatalf("the same step on the first process went on to %q (status %d)", again.location, again.status)
				}
			})
		})
	}
}
