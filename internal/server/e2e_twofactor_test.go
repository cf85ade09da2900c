package server

// End-to-end tests of two-factor sign-in (issue 4, DESIGN.md §4 and §6):
// the real server on loopback, a cookie-keeping HTTP client, codes computed
// by oathtool and QR codes read by zbarimg, never by the server's own TOTP
// or QR code.

import (
	"bytes"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const (
	tfIssuer       = "Gatehouse E2E"
	tfStrictIssuer = "Strict Co"
	hookAPIKey     = "k"
	hookSecret     = "s3cret"
	hookTimeout    = 2 * time.Second
)

// tfSuite is one server with the resources the scenarios share.
type tfSuite struct {
	app     *testApp
	hook    *hookReceiver // answers at once
	slow    *hookReceiver // holds every request past the timeout
	invalid string        // the page's answer to a wrong code

	mu       sync.Mutex
	enrolled []*authenticator // every confirmed secret, for the at-rest scan
	alice    *authenticator
}

func (s *tfSuite) remember(a *authenticator) *authenticator {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enrolled = append(s.enrolled, a)
	return a
}

func (s *tfSuite) enrol(t *testing.T, id, extra string) (*authenticator, *browser) {
	t.Helper()
	a, b := enrolUser(t, s.app, id, extra)
	return s.remember(a), b
}

func clientWithAuthConfig(authConfigID string) string {
	return webClientYAML + "authConfig:\n  id: " + authConfigID + "\n"
}

func webhookAuthConfig(endpoint, secret string) string {
	y := "twoFactor:\n  issuerName: " + tfIssuer + "\n  webhook:\n    endpoint: '" + endpoint + "'\n" +
		"    timeout: 2000\n    headers:\n      X-Api-Key: " + hookAPIKey + "\n"
	if secret != "" {
		y += "    secret: " + secret + "\n"
	}
	return y
}

func newTFSuite(t *testing.T, st inspectableStore) *tfSuite {
	t.Helper()
	s := &tfSuite{hook: newHookReceiver(t, false), slow: newHookReceiver(t, true)}
	// The receivers listen on loopback: allow private webhook endpoints.
	s.app = startApp(t, st.store, func(c *config.Config) { c.Webhook.AllowPrivate = true })
	putResource(t, s.app, "/AuthConfig/default", "twoFactor:\n  issuerName: "+tfIssuer+"\n")
	putResource(t, s.app, "/AuthConfig/hooked", webhookAuthConfig(s.hook.srv.URL+"/codes", hookSecret))
	putResource(t, s.app, "/AuthConfig/slowhook", webhookAuthConfig(s.slow.srv.URL+"/codes", ""))
	putResource(t, s.app, "/AuthConfig/strict", "twoFactor:\n  issuerName: "+tfStrictIssuer+"\n  required: true\n")
	putResource(t, s.app, "/Client/mywebapp", webClientYAML)
	putResource(t, s.app, "/Client/hookapp", clientWithAuthConfig("hooked"))
	putResource(t, s.app, "/Client/slowapp", clientWithAuthConfig("slowhook"))
	putResource(t, s.app, "/Client/strictapp", clientWithAuthConfig("strict"))
	putResource(t, s.app, "/Client/strictclient", webClientYAML+"twoFactor:\n  required: true\n")
	s.invalid = s.invalidCodeMessage(t)
	return s
}

// invalidCodeMessage is what the code prompt says to a wrong code: the one
// answer every refused code must get.
func (s *tfSuite) invalidCodeMessage(t *testing.T) string {
	t.Helper()
	a, _ := s.enrol(t, "reference", "")
	l := newOAuthLogin(s.app, "mywebapp")
	b := browserFor(t, s.app)
	p := passwordStep(t, b, l.URL, a.user)
	expectCodePrompt(t, p)
	p = submitCode(t, b, p, wrongCode(t, a.secret))
	msg := errorText(t, p)
	if msg == "" || p.status >= 500 || p.location != "" {
		t.Fatalf("a wrong code got %s (status %d, location %q) without an #error:\n%s", p.url, p.status, p.location, p.body)
	}
	return msg
}

func TestTwoFactorEndToEnd(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	requireTool(t, "zbarimg", "zbar-tools")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := openInspectable(t, be.Name)
			s := newTFSuite(t, st)

			t.Run("a user enrols by scanning the QR code like Google Authenticator", s.enrolLikeAnAuthenticatorApp)
			t.Run("a user with 2FA signs in through the OAuth flow and the ID token says otp and mfa", s.signInWithCode)
			t.Run("a code is accepted once, and an older step after a newer one is refused", s.replayIsRefused)
			t.Run("of 50 parallel submissions of one code exactly one reaches the client", func(t *testing.T) {
				a, _ := s.enrol(t, "racer", "")
				raceOneCode(t, []*testApp{s.app}, a, s.invalid, 50)
			})
			t.Run("malformed codes get the invalid-code answer and count as failures; spaces inside a code are ignored", s.badInputs)
			t.Run("five wrong codes lock the factor, across restarted logins and for the right code too", s.lockout)
			t.Run("wrong recovery codes count toward the same lockout", s.recoveryCodesShareTheCounter)
			t.Run("100 parallel wrong codes are evaluated at most five times", s.floodOfWrongCodes)
			t.Run("a recovery code signs in once", s.recoveryCodeOnce)
			t.Run("disabling needs a current code, ends the other sessions, and leaves a password-only login", s.disable)
			t.Run("the webhook delivers a signed code that signs in once", s.webhook)
			t.Run("a second login within one step gets a pushed code it can use", s.webhookTwiceInOneStep)
			t.Run("a slow webhook does not hold up the code prompt or break the login", s.slowWebhook)
			t.Run("required two-factor makes a user enrol inside the login flow", s.requiredEnrolment)
			t.Run("a session that passed only the password reaches neither authorize, consent, settings nor the admin API", s.halfSignedIn)
			t.Run("a failed webhook delivery is retried under the same event id", s.webhookRetried)
			t.Run("a copy of the database reveals no TOTP secret and no recovery code", func(t *testing.T) {
				s.noSecretsAtRest(t, st.dump(t))
			})
		})
	}
}

// TestTwoFactorOneCodeAcrossTwoServers runs two server processes on one
// PostgreSQL schema with one master key, as one service (DESIGN.md §7):
// one code submitted 50 times to both at once signs in once.
func TestTwoFactorOneCodeAcrossTwoServers(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	dsn := gormstoretest.PostgresDSN(t)
	if dsn == "" {
		t.Skipf("%s is not set: two servers need a shared PostgreSQL", gormstoretest.PostgresEnv)
	}
	key := secret.RandomBytes(32)
	app1 := startAppWithKey(t, gormstoretest.OpenPostgresAt(t, dsn), key)
	app2 := startAppWithKey(t, gormstoretest.OpenPostgresAt(t, dsn), key)
	putResource(t, app1, "/Client/mywebapp", webClientYAML)
	s := &tfSuite{app: app1}
	invalid := s.invalidCodeMessage(t)
	a, _ := enrolUser(t, app1, "racer", "")
	raceOneCode(t, []*testApp{app1, app2}, a, invalid, 50)
}

func (s *tfSuite) enrolLikeAnAuthenticatorApp(t *testing.T) {
	app := s.app
	const user = "alice2fa"
	putUser(t, app, user, "")
	b := browserFor(t, app)
	signInPassword(t, b, user)

	p := b.get(app.URL + pathTwoFactorEnable)
	if p.url.Path != pathTwoFactorEnable {
		t.Fatalf("GET %s ended at %s (status %d)", pathTwoFactorEnable, p.url, p.status)
	}
	e := readEnrolmentPage(t, p)
	checkOTPAuthURI(t, e.uri, e.secret, tfIssuer, user+"@example.com")
	if got := decodeQR(t, e.qr); got != e.uri {
		t.Fatalf("the QR code carries %q, the page shows %q", got, e.uri)
	}

	// A wrong code shows #error and keeps the same secret.
	p = submitForm(t, b, p, "code", url.Values{"code": {wrongCode(t, e.secret)}})
	if errorText(t, p) == "" || p.status >= 500 {
		t.Fatalf("a wrong enrolment code got no #error (%s, status %d):\n%s", p.url, p.status, p.body)
	}
	if again := readEnrolmentPage(t, p); again.secret != e.secret {
		t.Fatal("a wrong enrolment code replaced the secret the user already scanned")
	}
	if tf, _ := userTwoFactorOf(t, app, user); tf.Enabled {
		t.Fatal("two-factor was enabled by a wrong code")
	}

	// What the app shows now, typed in.
	code, step := codeNow(t, e.secret)
	p = submitForm(t, b, p, "code", url.Values{"code": {code}})
	codes := recoveryCodes(t, p)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown, want 10: %q", len(codes), codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) < 8 || seen[c] {
			t.Fatalf("recovery codes %q: want 10 distinct codes", codes)
		}
		seen[c] = true
	}
	s.alice = s.remember(&authenticator{user: user, secret: e.secret, last: step, recovery: codes})

	tf, body := userTwoFactorOf(t, app, user)
	if !tf.Enabled || tf.Method != "totp" || tf.RecoveryCodesRemaining == nil || *tf.RecoveryCodesRemaining != 10 || tf.EnrolledAt == nil {
		t.Fatalf("GET /User/%s twoFactor = %+v, want enabled totp with 10 recovery codes and enrolledAt:\n%s", user, tf, body)
	}
	for _, leak := range append([]string{e.secret, strings.ToLower(e.secret)}, codes...) {
		if strings.Contains(body, leak) {
			t.Fatalf("GET /User/%s reveals a secret: %s", user, body)
		}
	}
	if code, list := adminRequest(t, app, http.MethodGet, "/User", "", ""); code != http.StatusOK || strings.Contains(list, e.secret) {
		t.Fatalf("GET /User = %d, or it reveals the secret", code)
	}

	// The codes are shown once.
	p = b.get(app.URL + pathTwoFactorSettings)
	if p.status != http.StatusOK || p.url.Path != pathTwoFactorSettings {
		t.Fatalf("the settings page ended at %s (status %d)", p.url, p.status)
	}
	for _, leak := range append([]string{e.secret}, codes...) {
		if strings.Contains(p.body, leak) {
			t.Fatalf("the settings page shows a recovery code or the secret again:\n%s", p.body)
		}
	}
	if n := len(auditEvents(t, app, user, audit.TwoFactorEnabled)); n != 1 {
		t.Fatalf("%d %s audit events, want 1", n, audit.TwoFactorEnabled)
	}
}

func (s *tfSuite) signInWithCode(t *testing.T) {
	a := s.alice
	if a == nil {
		t.Fatal("needs the enrolment scenario to have passed")
	}
	l := newOAuthLogin(s.app, "mywebapp")
	b := browserFor(t, s.app)
	p := passwordStep(t, b, l.URL, a.user)
	expectCodePrompt(t, p)
	back := toClient(t, b, submitCode(t, b, p, a.next(t)))
	id := l.exchange(t, back)
	expectAMR(t, id, "pwd", "otp", "mfa")
	if id.Subject != a.user {
		t.Fatalf("id token sub = %q, want %q", id.Subject, a.user)
	}
}

func (s *tfSuite) replayIsRefused(t *testing.T) {
	app := s.app
	const user = "replay"
	// Everything below happens inside one step, so "current", "older" and
	// "two steps away" mean what they say when the server checks them.
	waitForStepMargin(8 * time.Second)
	cur, margin := totpStep(time.Now()), leftInStep(time.Now())

	putUser(t, app, user, "")
	b := browserFor(t, app)
	signInPassword(t, b, user)
	p := b.get(app.URL + pathTwoFactorEnable)
	e := readEnrolmentPage(t, p)
	a := s.remember(&authenticator{user: user, secret: e.secret})
	p = submitForm(t, b, p, "code", url.Values{"code": {codeAtStep(t, e.secret, cur-1)}})
	a.recovery = recoveryCodes(t, p)

	// The next step (the one future step the server accepts) signs in.
	newer := codeAtStep(t, e.secret, cur+1)
	expectAMR(t, loginWithCode(t, app, "mywebapp", user, newer), "otp", "mfa")

	l := newOAuthLogin(app, "mywebapp")
	b2 := browserFor(t, app)
	p = passwordStep(t, b2, l.URL, user)
	expectCodePrompt(t, p)
	p = submitCode(t, b2, p, newer)
	expectRefused(t, p, "code", s.invalid, "the same code again in another browser")
	p = submitCode(t, b2, p, codeAtStep(t, e.secret, cur))
	expectRefused(t, p, "code", s.invalid, "the code of the current step after the next step's code was accepted")
	if n := len(auditEvents(t, app, user, audit.TwoFactorReused)); n != 2 {
		t.Fatalf("%d %s audit events, want 2 (the replayed code and the older step)", n, audit.TwoFactorReused)
	}

	p = submitCode(t, b2, p, codeAtStep(t, e.secret, cur+2))
	expectRefused(t, p, "code", s.invalid, "a code two steps ahead")
	p = submitCode(t, b2, p, codeAtStep(t, e.secret, cur-2))
	expectRefused(t, p, "code", s.invalid, "a code two steps old")
	if n := len(auditEvents(t, app, user, audit.TwoFactorFailure)); n != 2 {
		t.Fatalf("%d %s audit events, want 2 (the codes two steps away)", n, audit.TwoFactorFailure)
	}
	if totpStep(time.Now()) != cur {
		t.Fatalf("the scenario overran its step (%v left at the start was not enough); its results do not mean what they say", margin)
	}
}

// raceOneCode brings n browsers of one user to the code prompt (browser i
// on apps[i%len(apps)]) and submits one valid code from all at once.
func raceOneCode(t *testing.T, apps []*testApp, a *authenticator, invalid string, n int) {
	t.Helper()
	type contender struct {
		b      *browser
		l      oauthLogin
		prompt page
	}
	cs := make([]contender, n)
	for i := range cs {
		app := apps[i%len(apps)]
		cs[i].l = newOAuthLogin(app, "mywebapp")
		cs[i].b = browserFor(t, app)
		cs[i].prompt = passwordStep(t, cs[i].b, cs[i].l.URL, a.user)
		expectCodePrompt(t, cs[i].prompt)
	}
	code := a.next(t)
	type result struct {
		p   page
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		target, form := formRequest(t, cs[i].prompt, "code", url.Values{"code": {code}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i].p, results[i].err = postRaw(cs[i].b, target, form)
		}()
	}
	close(start)
	wg.Wait()

	var winners []int
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("submission %d: %v", i, r.err)
		case r.p.status >= 500:
			t.Fatalf("submission %d: server error %d:\n%s", i, r.p.status, r.p.body)
		case r.p.location != "":
			u, err := url.Parse(r.p.location)
			if err != nil || u.Query().Get("code") == "" {
				t.Fatalf("submission %d left Gatehouse without a code: %s", i, r.p.location)
			}
			winners = append(winners, i)
		default:
			if got := errorText(t, r.p); got != invalid {
				t.Fatalf("submission %d: #error = %q, want %q (%s, status %d)", i, got, invalid, r.p.url, r.p.status)
			}
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d parallel submissions of one code reached the client, want exactly 1", len(winners), n)
	}
	w := cs[winners[0]]
	back, _ := url.Parse(results[winners[0]].p.location)
	expectAMR(t, w.l.exchange(t, back), "pwd", "otp", "mfa")
}

func (s *tfSuite) badInputs(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "badinput", "")
	batches := [][]struct{ name, code string }{
		{
			{"an empty code", ""},
			{"one digit", "1"},
			{"five digits", "12345"},
			{"seven digits", "1234567"},
		},
		{
			{"letters", "abcdef"},
			{"Arabic-Indic digits", "١٢٣٤٥٦"},
			{"a NUL byte", "123\x00456"},
			{"a megabyte of digits", strings.Repeat("1", 1<<20)},
		},
	}
	// Fewer than five per login, each batch closed by a good code, so the
	// lockout does not hide whether a bad input counted.
	failures := 0
	for i, batch := range batches {
		l := newOAuthLogin(app, "mywebapp")
		b := browserFor(t, app)
		p := passwordStep(t, b, l.URL, a.user)
		expectCodePrompt(t, p)
		for _, in := range batch {
			p = submitCode(t, b, p, in.code)
			expectRefused(t, p, "code", s.invalid, in.name)
			failures++
			if n := len(auditEvents(t, app, a.user, audit.TwoFactorFailure)); n != failures {
				t.Fatalf("after %s: %d %s audit events, want %d: every bad input counts as a failure", in.name, n, audit.TwoFactorFailure, failures)
			}
		}
		code := a.next(t)
		spaced := code[:3] + " " + code[3:]
		if i == 1 {
			spaced = " " + code[:2] + " " + code[2:4] + " " + code[4:] + " "
		}
		expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, spaced))), "otp", "mfa")
	}
}

func (s *tfSuite) lockout(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "locked", "")
	wrong := wrongCode(t, a.secret)

	b1 := browserFor(t, app)
	p := passwordStep(t, b1, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	for i := range 3 {
		p = submitCode(t, b1, p, wrong)
		expectRefused(t, p, "code", s.invalid, "wrong code "+string(rune('1'+i)))
	}
	// A new login (password again) continues the count.
	b2 := browserFor(t, app)
	p = passwordStep(t, b2, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	for i := range 2 {
		p = submitCode(t, b2, p, wrong)
		expectRefused(t, p, "code", s.invalid, "wrong code "+string(rune('4'+i))+" after restarting the login")
	}
	if n := len(auditEvents(t, app, a.user, audit.TwoFactorLockout)); n != 1 {
		t.Fatalf("%d %s audit events after five wrong codes over two logins, want 1: restarting the login must not reset the counter", n, audit.TwoFactorLockout)
	}

	right := a.next(t)
	p = submitCode(t, b2, p, right)
	expectRefused(t, p, "code", s.invalid, "the right code during the lockout")

	b3 := browserFor(t, app)
	p = passwordStep(t, b3, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	p = submitCode(t, b3, p, right)
	expectRefused(t, p, "code", s.invalid, "the right code during the lockout, in a new login")
	p = submitCode(t, b3, p, a.recovery[0])
	expectRefused(t, p, "code", s.invalid, "a valid recovery code during the lockout")

	tf, body := userTwoFactorOf(t, app, a.user)
	if !tf.Enabled || tf.RecoveryCodesRemaining == nil || *tf.RecoveryCodesRemaining != 10 {
		t.Fatalf("after the lockout twoFactor = %+v, want enabled with all 10 recovery codes (none spent while locked):\n%s", tf, body)
	}
}

func (s *tfSuite) recoveryCodesShareTheCounter(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "lockmix", "")
	wrong := wrongCode(t, a.secret)
	b := browserFor(t, app)
	p := passwordStep(t, b, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	for i := range 3 {
		p = submitCode(t, b, p, wrong)
		expectRefused(t, p, "code", s.invalid, "wrong code "+string(rune('1'+i)))
	}
	// Well-formed recovery codes that were never issued.
	for _, rc := range []string{"abcde-fghjk", "mnpqr-stuvw"} {
		p = submitCode(t, b, p, rc)
		expectRefused(t, p, "code", s.invalid, "an unknown recovery code")
	}
	if n := len(auditEvents(t, app, a.user, audit.TwoFactorLockout)); n != 1 {
		t.Fatalf("%d %s audit events after three wrong codes and two wrong recovery codes, want 1", n, audit.TwoFactorLockout)
	}
	p = submitCode(t, b, p, a.recovery[0])
	expectRefused(t, p, "code", s.invalid, "a valid recovery code during the lockout")
	p = submitCode(t, b, p, a.next(t))
	expectRefused(t, p, "code", s.invalid, "the right code during the lockout")
}

func (s *tfSuite) floodOfWrongCodes(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "flood", "")
	wrong := wrongCode(t, a.secret)
	const sessions, perSession = 25, 4
	type shot struct {
		b      *browser
		target string
		form   url.Values
	}
	var shots []shot
	for range sessions {
		b := browserFor(t, app)
		p := passwordStep(t, b, newOAuthLogin(app, "mywebapp").URL, a.user)
		expectCodePrompt(t, p)
		target, form := formRequest(t, p, "code", url.Values{"code": {wrong}})
		for range perSession {
			shots = append(shots, shot{b, target, form})
		}
	}
	pages := make([]page, len(shots))
	errs := make([]error, len(shots))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, sh := range shots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			pages[i], errs[i] = postRaw(sh.b, sh.target, sh.form)
		}()
	}
	close(start)
	wg.Wait()
	for i, p := range pages {
		if errs[i] != nil {
			t.Fatalf("submission %d: %v", i, errs[i])
		}
		expectRefused(t, p, "code", s.invalid, "one of 100 parallel wrong codes")
	}

	var evaluated, refusedLocked int
	for _, e := range append(auditEvents(t, app, a.user, audit.TwoFactorFailure), auditEvents(t, app, a.user, audit.TwoFactorReused)...) {
		if e.Detail["reason"] == "locked" {
			refusedLocked++
		} else {
			evaluated++
		}
	}
	if evaluated < 1 || evaluated > 5 {
		t.Fatalf("%d of 100 parallel wrong codes were evaluated (%d refused as locked), want 1 to 5", evaluated, refusedLocked)
	}
	if n := len(auditEvents(t, app, a.user, audit.TwoFactorLockout)); n < 1 {
		t.Fatalf("no %s audit event after 100 wrong codes", audit.TwoFactorLockout)
	}
	b := browserFor(t, app)
	p := passwordStep(t, b, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	expectRefused(t, submitCode(t, b, p, a.next(t)), "code", s.invalid, "the right code after the flood")
}

func (s *tfSuite) recoveryCodeOnce(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "recovery", "")
	rc := a.recovery[3]
	expectAMR(t, loginWithCode(t, app, "mywebapp", a.user, rc), "pwd", "mfa")
	tf, body := userTwoFactorOf(t, app, a.user)
	if tf.RecoveryCodesRemaining == nil || *tf.RecoveryCodesRemaining != 9 {
		t.Fatalf("after one recovery code twoFactor = %+v, want recoveryCodesRemaining 9:\n%s", tf, body)
	}
	if n := len(auditEvents(t, app, a.user, audit.RecoveryCodeUsed)); n != 1 {
		t.Fatalf("%d %s audit events, want 1", n, audit.RecoveryCodeUsed)
	}

	b := browserFor(t, app)
	p := passwordStep(t, b, newOAuthLogin(app, "mywebapp").URL, a.user)
	expectCodePrompt(t, p)
	expectRefused(t, submitCode(t, b, p, rc), "code", s.invalid, "a recovery code used before")
	if tf, body := userTwoFactorOf(t, app, a.user); tf.RecoveryCodesRemaining == nil || *tf.RecoveryCodesRemaining != 9 {
		t.Fatalf("after reusing a recovery code twoFactor = %+v, want recoveryCodesRemaining 9:\n%s", tf, body)
	}
}

func (s *tfSuite) disable(t *testing.T) {
	app := s.app
	a, bA := s.enrol(t, "disabler", "")

	// A second browser signs in with the code.
	bB := browserFor(t, app)
	p := passwordStep(t, bB, app.URL+"/auth/login", a.user)
	expectCodePrompt(t, p)
	p = submitCode(t, bB, p, a.next(t))
	if p.status != http.StatusOK || p.url.Path == pathTwoFactorPrompt || errorText(t, p) != "" {
		t.Fatalf("the second browser's sign-in ended at %s (status %d) #error %q", p.url, p.status, errorText(t, p))
	}
	if p = bB.get(app.URL + pathTwoFactorSettings); p.status != http.StatusOK || p.url.Path != pathTwoFactorSettings {
		t.Fatalf("the second browser cannot open the settings: %s (status %d)", p.url, p.status)
	}

	p = bA.get(app.URL + pathTwoFactorDisable)
	if p.status != http.StatusOK || p.url.Path != pathTwoFactorDisable {
		t.Fatalf("GET %s ended at %s (status %d):\n%s", pathTwoFactorDisable, p.url, p.status, p.body)
	}
	p = submitForm(t, bA, p, "code", url.Values{"code": {wrongCode(t, a.secret)}})
	expectRefused(t, p, "code", s.invalid, "disabling with a wrong code")
	if tf, _ := userTwoFactorOf(t, app, a.user); !tf.Enabled {
		t.Fatal("a wrong code disabled two-factor")
	}
	p = submitForm(t, bA, p, "code", url.Values{"code": {a.next(t)}})
	if p.status >= 400 || errorText(t, p) != "" {
		t.Fatalf("disabling with a current code ended at %s (status %d) #error %q:\n%s", p.url, p.status, errorText(t, p), p.body)
	}
	if tf, body := userTwoFactorOf(t, app, a.user); tf.Enabled {
		t.Fatalf("two-factor still enabled after disabling: %s", body)
	}
	if n := len(auditEvents(t, app, a.user, audit.TwoFactorDisabled)); n != 1 {
		t.Fatalf("%d %s audit events, want 1", n, audit.TwoFactorDisabled)
	}

	// The other browser was signed out; this one was not.
	if p = bB.get(app.URL + pathTwoFactorSettings); p.url.Path == pathTwoFactorSettings && p.status == http.StatusOK {
		t.Fatal("the user's other browser still reaches the settings after 2FA was disabled")
	}
	if p.url.Path != "/auth/login" || formWith(parseHTML(t, p), "password") == nil {
		t.Fatalf("the other browser should be asked to sign in; it ended at %s (status %d)", p.url, p.status)
	}
	if p = bA.get(app.URL + pathTwoFactorSettings); p.status != http.StatusOK || p.url.Path != pathTwoFactorSettings {
		t.Fatalf("the browser that disabled 2FA was signed out: %s (status %d)", p.url, p.status)
	}

	// The password alone signs in now.
	l := newOAuthLogin(app, "mywebapp")
	bC := browserFor(t, app)
	id := l.exchange(t, toClient(t, bC, passwordStep(t, bC, l.URL, a.user)))
	if contains(id.AMR, "otp") || !contains(id.AMR, "pwd") {
		t.Fatalf("after disabling, amr = %v, want pwd without otp", id.AMR)
	}
}

// webhook: the code prompt pushes the TOTP code to the AuthConfig's
// webhook (Aidbox's flow), with its headers and a signature; the token
// signs in once.
func (s *tfSuite) webhook(t *testing.T) {
	app := s.app
	a := s.enrolForWebhook(t, "hooky")

	l := newOAuthLogin(app, "hookapp")
	b := browserFor(t, app)
	p := passwordStep(t, b, l.URL, a.user)
	expectCodePrompt(t, p)
	d := s.hook.next(t, 5*time.Second)
	if got := d.header.Get("X-Api-Key"); got != hookAPIKey {
		t.Fatalf("X-Api-Key = %q, want the configured %q", got, hookAPIKey)
	}
	if ct := d.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	checkSignature(t, d, hookSecret)
	pl := s.checkPayload(t, d, a)
	back := toClient(t, b, submitCode(t, b, p, pl.Token))
	expectAMR(t, l.exchange(t, back), "pwd", "otp", "mfa")

	// The token is spent: another login cannot use it.
	b2 := browserFor(t, app)
	p = passwordStep(t, b2, newOAuthLogin(app, "hookapp").URL, a.user)
	expectCodePrompt(t, p)
	expectRefused(t, submitCode(t, b2, p, pl.Token), "code", s.invalid, "the webhook's token a second time")
	if n := len(auditEvents(t, app, a.user, audit.TwoFactorReused)); n != 1 {
		t.Fatalf("%d %s audit events, want 1", n, audit.TwoFactorReused)
	}
}

// webhookTwiceInOneStep: a user who signs in twice within one 30-second
// step gets a code from each prompt, and the second one must work too.
func (s *tfSuite) webhookTwiceInOneStep(t *testing.T) {
	app := s.app
	a := s.enrolForWebhook(t, "hooky2")
	step := totpStep(time.Now())

	l := newOAuthLogin(app, "hookapp")
	b := browserFor(t, app)
	p := passwordStep(t, b, l.URL, a.user)
	expectCodePrompt(t, p)
	first := s.checkPayload(t, s.hook.next(t, 5*time.Second), a)
	expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, first.Token))), "otp", "mfa")

	l2 := newOAuthLogin(app, "hookapp")
	b2 := browserFor(t, app)
	p = passwordStep(t, b2, l2.URL, a.user)
	expectCodePrompt(t, p)
	second := s.checkPayload(t, s.hook.next(t, 5*time.Second), a)
	if totpStep(time.Now()) != step {
		t.Fatal("the scenario overran its step; its result does not mean what it says")
	}
	if second.Token == first.Token {
		t.Fatal("the second prompt pushed the token the first login already spent: the server refuses the code it just sent (the webhook must push a step newer than the last one used, e.g. the next step, which the window accepts)")
	}
	expectAMR(t, l2.exchange(t, toClient(t, b2, submitCode(t, b2, p, second.Token))), "otp", "mfa")
}

// enrolForWebhook enrols a user with a phone number on the past step, with
// time left in the current one, so the step the webhook pushes is unused.
func (s *tfSuite) enrolForWebhook(t *testing.T, id string) *authenticator {
	t.Helper()
	waitForStepMargin(pastStepMargin + 2*time.Second)
	a, _ := s.enrol(t, id, "phoneNumber: '+15550100'\n")
	if cur := totpStep(time.Now()); a.last != cur-1 {
		t.Fatalf("setup: the enrolment used step %d, want the past step %d", a.last, cur-1)
	}
	s.hook.drain()
	return a
}

// checkPayload checks the body of DESIGN.md §6 and that its token is the
// user's TOTP code (by oathtool) of a step the server accepts now.
func (s *tfSuite) checkPayload(t *testing.T, d delivery, a *authenticator) codePayload {
	t.Helper()
	var pl codePayload
	if err := json.Unmarshal(d.body, &pl); err != nil {
		t.Fatalf("webhook body is not JSON: %v: %s", err, d.body)
	}
	if pl.Event != "two_factor.code" || pl.Channel != "totp" || pl.ID == "" {
		t.Fatalf("webhook body event=%q channel=%q id=%q, want two_factor.code, totp and an id: %s", pl.Event, pl.Channel, pl.ID, d.body)
	}
	if pl.User.ID != a.user || pl.User.Email != a.user+"@example.com" || pl.User.PhoneNumber != "+15550100" {
		t.Fatalf("webhook user = %+v, want id, email and phoneNumber of %s: %s", pl.User, a.user, d.body)
	}
	exp, err := time.Parse(time.RFC3339, pl.ExpiresAt)
	if err != nil || !exp.After(d.at) {
		t.Fatalf("webhook expiresAt = %q, want an RFC 3339 time after the delivery", pl.ExpiresAt)
	}
	if len(pl.Token) != 6 || strings.Trim(pl.Token, "0123456789") != "" {
		t.Fatalf("webhook token = %q, want six digits", pl.Token)
	}
	cur := totpStep(d.at)
	for step := cur - 1; step <= cur+1; step++ {
		if codeAtStep(t, a.secret, step) == pl.Token {
			return pl
		}
	}
	t.Fatalf("the webhook token is not the user's TOTP code of a step the server accepts now")
	return pl
}

func (s *tfSuite) slowWebhook(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "slowpoke", "")
	s.slow.drain()
	l := newOAuthLogin(app, "slowapp")
	b := browserFor(t, app)
	p := b.get(l.URL)
	started := time.Now()
	p = submitForm(t, b, p, "password", url.Values{"username": {a.user}, "password": {tfPassword}})
	took := time.Since(started)
	expectCodePrompt(t, p)
	// A functional bound, not a benchmark: the page waits for the hook's
	// timeout at most, and the rest is generous slack.
	if limit := hookTimeout + 3*time.Second; took > limit {
		t.Fatalf("the code prompt took %v behind a receiver that never answers; want under %v", took, limit)
	}
	s.slow.next(t, 2*time.Second) // it was asked
	expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, a.next(t)))), "otp", "mfa")
	if !waitFor(5*time.Second, func() bool { return len(auditEvents(t, app, a.user, audit.WebhookFailure)) > 0 }) {
		t.Fatalf("no %s audit event for the delivery that timed out", audit.WebhookFailure)
	}
}

// webhookRetried runs late in the suite so that the backoff of the slow
// receiver's retries has passed.
func (s *tfSuite) webhookRetried(t *testing.T) {
	byID := map[string]int{}
	ok := waitFor(10*time.Second, func() bool {
		clear(byID)
		for _, d := range s.slow.deliveries() {
			var pl codePayload
			if json.Unmarshal(d.body, &pl) == nil && pl.ID != "" {
				byID[pl.ID]++
				if byID[pl.ID] > 1 {
					return true
				}
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("the receiver that timed out got no second attempt of any event: %v", byID)
	}
}

func (s *tfSuite) requiredEnrolment(t *testing.T) {
	for _, tc := range []struct{ name, client, user, issuer string }{
		{"by the client's AuthConfig", "strictapp", "newbie", tfStrictIssuer},
		{"by the client itself", "strictclient", "newbie2", tfIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := s.app
			putUser(t, app, tc.user, "")
			l := newOAuthLogin(app, tc.client)
			b := browserFor(t, app)
			p := passwordStep(t, b, l.URL, tc.user)
			if p.location != "" {
				t.Fatalf("the client got %s before the user set up two-factor", p.location)
			}
			e := readEnrolmentPage(t, p)
			checkOTPAuthURI(t, e.uri, e.secret, tc.issuer, tc.user+"@example.com")
			a := s.remember(&authenticator{user: tc.user, secret: e.secret})
			p = submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}})
			if p.location != "" {
				t.Fatalf("enrolling inside the login went to the client (%s) without showing the recovery codes", p.location)
			}
			a.recovery = recoveryCodes(t, p)
			if len(a.recovery) != 10 {
				t.Fatalf("%d recovery codes, want 10", len(a.recovery))
			}
			p = continueLogin(t, b, p)
			expectAMR(t, l.exchange(t, toClient(t, b, p)), "pwd", "otp", "mfa")
			if tf, body := userTwoFactorOf(t, app, tc.user); !tf.Enabled || tf.Method != "totp" {
				t.Fatalf("after enrolling in the login twoFactor = %+v:\n%s", tf, body)
			}
		})
	}
}

// continueLogin follows the page's way on after the recovery codes: its
// only form (a "continue" button), else a link marked #continue.
func continueLogin(t *testing.T, b *browser, p page) page {
	t.Helper()
	doc := parseHTML(t, p)
	if forms := elements(doc, "form"); len(forms) == 1 {
		return b.post(formTarget(t, p, forms[0]), mergeHidden(forms[0], nil))
	}
	if a := elementByID(doc, "continue"); a != nil {
		if href, ok := attr(a, "href"); ok {
			u, err := p.url.Parse(href)
			if err != nil {
				t.Fatal(err)
			}
			return b.get(u.String())
		}
	}
	t.Fatalf("no way on from the recovery codes to the client (%s, status %d):\n%s", p.url, p.status, p.body)
	return page{}
}

func (s *tfSuite) halfSignedIn(t *testing.T) {
	app := s.app
	a, _ := s.enrol(t, "halfway", "")
	l := newOAuthLogin(app, "mywebapp")
	b := browserFor(t, app)
	prompt := passwordStep(t, b, l.URL, a.user)
	expectCodePrompt(t, prompt)
	csrf := prompt.csrf(t)

	noCode := func(what string, p page) {
		t.Helper()
		if p.status >= 500 {
			t.Fatalf("%s: server error %d", what, p.status)
		}
		if p.location == "" {
			return
		}
		if u, err := url.Parse(p.location); err != nil || u.Query().Get("code") != "" {
			t.Fatalf("%s gave the client a code without the second factor: %s", what, p.location)
		}
	}
	p := b.get(l.URL)
	t.Logf("authorize: ended at %s (status %d)", p.url.Path, p.status)
	noCode("authorize", p)
	if p.url.Path != "/auth/login" && p.url.Path != pathTwoFactorPrompt && p.status < 400 {
		t.Fatalf("authorize in a half-signed-in session ended at %s (status %d)", p.url, p.status)
	}

	p = b.get(app.URL + "/auth/consent")
	t.Logf("consent: ended at %s (status %d)", p.url.Path, p.status)
	noCode("GET consent", p)
	if formWith(parseHTML(t, p), "decision") != nil {
		t.Fatal("the consent page was shown to a session that has not passed the second factor")
	}
	noCode("POST consent", b.post(app.URL+"/auth/consent", url.Values{"_csrf": {csrf}, "decision": {"allow"}}))

	for _, path := range []string{pathTwoFactorSettings, pathTwoFactorEnable, pathTwoFactorDisable} {
		p = b.get(app.URL + path)
		t.Logf("%s: ended at %s (status %d)", path, p.url.Path, p.status)
		if p.status >= 500 || (p.status == http.StatusOK && p.url.Path == path) {
			t.Fatalf("GET %s in a half-signed-in session: %s (status %d)", path, p.url, p.status)
		}
		if has(t, p, "totp-secret") || has(t, p, "recovery-codes") {
			t.Fatalf("GET %s in a half-signed-in session shows two-factor secrets", path)
		}
	}
	p = b.post(app.URL+pathTwoFactorDisable, url.Values{"_csrf": {csrf}, "code": {a.recovery[0]}})
	if tf, _ := userTwoFactorOf(t, app, a.user); !tf.Enabled || p.status >= 500 {
		t.Fatalf("a half-signed-in session disabled two-factor (status %d)", p.status)
	}

	req, _ := http.NewRequest(http.MethodGet, app.URL+"/User/"+a.user, nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the admin API answered %d to a half-signed-in browser session", resp.StatusCode)
	}
}

func (s *tfSuite) noSecretsAtRest(t *testing.T, dump []byte) {
	if !bytes.Contains(dump, []byte("alice2fa@example.com")) {
		t.Fatal("the dump does not hold the users: it proves nothing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.enrolled) < 5 {
		t.Fatalf("only %d enrolled users to look for", len(s.enrolled))
	}
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding)
	for _, a := range s.enrolled {
		raw, err := b32.DecodeString(a.secret)
		if err != nil {
			t.Fatal(err)
		}
		needles := map[string][]byte{
			"the base32 secret":             []byte(a.secret),
			"the base32 secret, lower case": []byte(strings.ToLower(a.secret)),
			"the raw secret":                raw,
			"the raw secret in hex":         []byte(hex.EncodeToString(raw)),
		}
		for i, rc := range a.recovery {
			needles["recovery code "+string(rune('a'+i))] = []byte(rc)
			needles["recovery code "+string(rune('a'+i))+" without dashes"] = []byte(strings.ReplaceAll(rc, "-", ""))
		}
		for what, needle := range needles {
			if bytes.Contains(dump, needle) {
				t.Errorf("the database holds %s of %s in clear", what, a.user)
			}
		}
	}
}
