package server

// End-to-end tests of issue 5 (SMS and e-mail codes, recovery, and the MFA
// API): the real server on loopback, a local webhook receiver standing in
// for an SMS and e-mail gateway (the only place a code ever shows up), and
// TOTP codes computed by oathtool. Freshcom's, Authing's and Clerk's
// documented flows are transcribed against Gatehouse's endpoints.
//
// Expired codes and mfa_tokens are not driven here: the server's clock
// cannot be moved under startApp, and waiting ten minutes is no test. The
// expiry rules are unit tests of internal/twofactor (one-time codes, mfa
// tokens) with an injected clock.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

const (
	i5Secret   = "verysecret-0123456789"
	i5Password = "password"
	i5Issuer   = "Gatehouse Issue5"
)

// A first-party app that signs users in with their password (the
// password grant and the sign-in API), with refresh tokens and ID tokens.
const passwordClientYAML = `
secret: verysecret-0123456789
first_party: true
grant_types: [password, refresh_token]
scope: [openid, offline_access]
auth:
  password:
    secret_required: true
    refresh_token: true
`

// i5Suite is one server with a gateway and the clients the flows share.
type i5Suite struct {
	app *testApp
	gw  gateway
}

func newI5Suite(t *testing.T, st store.Store) *i5Suite {
	t.Helper()
	s := &i5Suite{gw: gateway{newHookReceiver(t, false)}}
	// The gateway listens on loopback: allow private webhook endpoints.
	s.app = startApp(t, st, func(c *config.Config) { c.Webhook.AllowPrivate = true })
	hook := "  webhook:\n    endpoint: '" + s.gw.srv.URL + "/codes'\n    timeout: 2000\n"
	putResource(t, s.app, "/AuthConfig/default", "twoFactor:\n  issuerName: "+i5Issuer+"\n"+hook+"signUp:\n  enabled: true\n")
	// Freshcom's account-wide default: SMS codes for every new account.
	putResource(t, s.app, "/AuthConfig/freshcom", "twoFactor:\n  issuerName: "+i5Issuer+"\n  defaultMethod: sms\n"+hook+"signUp:\n  enabled: true\n")
	putResource(t, s.app, "/Client/mobile", passwordClientYAML)
	putResource(t, s.app, "/Client/mobile2", passwordClientYAML)
	putResource(t, s.app, "/Client/freshcom", passwordClientYAML+"authConfig:\n  id: freshcom\n")
	putResource(t, s.app, "/Client/mywebapp", webClientYAML)
	return s
}

func TestIssue5EndToEnd(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	requireTool(t, "zbarimg", "zbar-tools")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			s := newI5Suite(t, be.Open(t))
			t.Run("Freshcom: a user turns on two-factor by verifying a phone number", s.freshcomEnableByPhone)
			t.Run("Freshcom: registering with a verified phone turns two-factor on in one request", s.freshcomRegister)
			t.Run("Freshcom: the password grant without otp sends the code, and the same request with otp gets tokens", s.freshcomLogin)
			t.Run("the mfa-otp grant finishes a password grant with the mfa_token", s.mfaOTPGrant)
			t.Run("Authing: associate, confirm, verify, recover with a recovery code, and delete TOTP", s.authingTOTP)
			t.Run("Clerk: prepare and attempt a phone code; attempt TOTP without prepare", s.clerk)
			t.Run("wrong, malformed, reused and foreign codes are refused", s.badCodes)
			t.Run("an mfa_token completes once and only for its client", s.mfaTokenRules)
			t.Run("codes beyond the send limit are refused with 429", s.sendLimit)
			t.Run("SMS and e-mail codes need a verified destination", s.unverified)
			t.Run("the hosted login of an SMS user shows the masked phone, sends again, and signs in", s.hostedSMSLogin)
			t.Run("the hosted settings turn text messages on after verifying the phone", s.hostedSettings)
		})
	}
}

// --- users and sign-ins ------------------------------------------------------

// user creates a user through the admin API: <id>@example.com, unverified.
func (s *i5Suite) user(t *testing.T, id, extra string) {
	t.Helper()
	putResource(t, s.app, "/User/"+id, "email: "+id+"@example.com\npassword: "+i5Password+"\n"+extra)
}

// password runs the password grant of client for user; extra joins the form.
func (s *i5Suite) password(t *testing.T, client, user string, extra url.Values) apiResp {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {i5Password}}
	for k, v := range extra {
		form[k] = v
	}
	return tokenRequest(t, s.app, client, i5Secret, form)
}

// bearer signs user in with the password grant (no second factor yet) and
// returns the access token.
func (s *i5Suite) bearer(t *testing.T, user string) string {
	t.Helper()
	r := s.password(t, "mobile", user, nil)
	wantTokens(t, r)
	return r.str("access_token")
}

// smsUser creates a user with a verified phone and turns SMS codes on
// through the self-service API, as the user's app would.
func (s *i5Suite) smsUser(t *testing.T, id, phone string) []string {
	t.Helper()
	s.user(t, id, "phoneNumber: '"+phone+"'\nphoneVerified: true\n")
	r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/sms", s.bearer(t, id), map[string]any{})
	wantStatus(t, r, http.StatusOK, "")
	return r.strings(t, "recovery_codes")
}

// totpUser creates a user and pairs an authenticator app through the API.
func (s *i5Suite) totpUser(t *testing.T, id string) *authenticator {
	t.Helper()
	s.user(t, id, "")
	at := s.bearer(t, id)
	r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/totp", at, map[string]any{})
	wantStatus(t, r, http.StatusOK, "")
	a := &authenticator{user: id, secret: r.str("secret")}
	c := callAPI(t, s.app, http.MethodPost, "/auth/mfa/totp/confirm", at, map[string]any{"pending_token": r.str("pending_token"), "code": a.next(t)})
	wantStatus(t, c, http.StatusOK, "")
	a.recovery = c.strings(t, "recovery_codes")
	return a
}

// signIn is POST /auth/sign-in of client for user.
func (s *i5Suite) signIn(t *testing.T, client, user string) apiResp {
	t.Helper()
	return callAPI(t, s.app, http.MethodPost, "/auth/sign-in", "", map[string]any{
		"client_id": client, "client_secret": i5Secret, "username": user, "password": i5Password,
	})
}

// mfaToken signs in and expects needs_second_factor.
func (s *i5Suite) mfaToken(t *testing.T, client, user string) string {
	t.Helper()
	r := s.signIn(t, client, user)
	if r.status != http.StatusOK || r.str("status") != "needs_second_factor" || r.str("mfa_token") == "" {
		t.Fatalf("sign-in of %s: %d %s", user, r.status, r.raw)
	}
	return r.str("mfa_token")
}

// step posts to /auth/sign-in/prepare or /attempt with the sign-in's
// client credentials.
func (s *i5Suite) step(t *testing.T, path, client, token string, fields map[string]any) apiResp {
	t.Helper()
	body := map[string]any{"client_id": client, "client_secret": i5Secret, "mfa_token": token}
	for k, v := range fields {
		body[k] = v
	}
	return callAPI(t, s.app, http.MethodPost, path, "", body)
}

func (s *i5Suite) prepare(t *testing.T, client, token string) apiResp {
	t.Helper()
	return s.step(t, "/auth/sign-in/prepare", client, token, map[string]any{"strategy": "phone_code", "destination_id": "phone"})
}

func (s *i5Suite) attempt(t *testing.T, client, token, strategy, code string) apiResp {
	t.Helper()
	return s.step(t, "/auth/sign-in/attempt", client, token, map[string]any{"strategy": strategy, "code": code, "scope": "openid"})
}

// preparedCode prepares a phone code for the sign-in and returns it as the
// gateway received it.
func (s *i5Suite) preparedCode(t *testing.T, client, token, phone string) string {
	t.Helper()
	n := s.gw.mark()
	wantStatus(t, s.prepare(t, client, token), http.StatusOK, "")
	return s.gw.codeTo(t, n, phone)
}

func wantComplete(t *testing.T, r apiResp) {
	t.Helper()
	if r.status != http.StatusOK || r.str("status") != "complete" || r.str("access_token") == "" {
		t.Fatalf("want a completed sign-in, got %d %s", r.status, r.raw)
	}
}

func wantMFAAMR(t *testing.T, app *testApp, r apiResp) {
	t.Helper()
	if amr := idTokenAMR(t, app, r); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
		t.Fatalf("amr = %v, want [pwd otp mfa]", amr)
	}
}

// --- Freshcom ----------------------------------------------------------------

// freshcomEnableByPhone: Freshcom sends a phone verification code, then
// updates the user with the phone number, the code and tfa_sms. Here: POST
// /auth/verification-codes, POST /auth/verify-destination, POST
// /auth/mfa/sms.
func (s *i5Suite) freshcomEnableByPhone(t *testing.T) {
	const phone = "+14155550101"
	s.user(t, "fc-ann", "")
	at := s.bearer(t, "fc-ann")

	n := s.gw.mark()
	r := callAPI(t, s.app, http.MethodPost, "/auth/verification-codes", at, map[string]any{"channel": "sms", "destination": phone})
	wantStatus(t, r, http.StatusAccepted, "")
	code := s.gw.codeTo(t, n, phone)
	if strings.Contains(r.raw, code) {
		t.Fatalf("the API answered the code: %s", r.raw)
	}
	verify := func(code string) apiResp {
		return callAPI(t, s.app, http.MethodPost, "/auth/verify-destination", at, map[string]any{"channel": "sms", "destination": phone, "code": code})
	}
	t.Run("a wrong code is 422 and verifies nothing", func(t *testing.T) {
		wantStatus(t, verify("000000"), http.StatusUnprocessableEntity, "invalid_code")
		if _, body := userTwoFactorOf(t, s.app, "fc-ann"); strings.Contains(body, `"phoneVerified":true`) {
			t.Fatalf("the phone became verified: %s", body)
		}
	})
	t.Run("the right code makes the phone the user's, verified", func(t *testing.T) {
		r := verify(code)
		wantStatus(t, r, http.StatusOK, "")
		if r.str("phoneNumber") != phone || r.body["phoneVerified"] != true {
			t.Fatalf("user after verification: %s", r.raw)
		}
	})
	t.Run("the same code again is 422", func(t *testing.T) {
		wantStatus(t, verify(code), http.StatusUnprocessableEntity, "invalid_code")
	})
	t.Run("SMS two-factor turns on for the verified phone, with recovery codes once", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/sms", at, map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
		if r.body["enabled"] != true || r.str("method") != "sms" || len(r.strings(t, "recovery_codes")) != 10 || strings.Contains(r.raw, phone) {
			t.Fatalf("enable: %s", r.raw)
		}
		if tf, body := userTwoFactorOf(t, s.app, "fc-ann"); !tf.Enabled || tf.Method != "sms" {
			t.Fatalf("User.twoFactor = %+v: %s", tf, body)
		}
		if evs := auditEvents(t, s.app, "fc-ann", "user.destination_verified"); len(evs) != 1 {
			t.Fatalf("%d destination_verified events", len(evs))
		}
	})
	t.Run("the password alone no longer gets tokens", func(t *testing.T) {
		wantStatus(t, s.password(t, "mobile", "fc-ann", nil), http.StatusForbidden, "mfa_required")
	})
}

// freshcomRegister: Freshcom creates a user with a phone number, its
// verification code and tfa_sms in one request. Here: the AuthConfig's
// defaultMethod sms, POST /auth/sign-up/verification-code, POST
// /auth/sign-up.
func (s *i5Suite) freshcomRegister(t *testing.T) {
	const phone = "+14155550102"
	creds := map[string]any{"client_id": "freshcom", "client_secret": i5Secret}
	n := s.gw.mark()
	r := callAPI(t, s.app, http.MethodPost, "/auth/sign-up/verification-code", "", merge(creds, map[string]any{"channel": "sms", "destination": phone}))
	wantStatus(t, r, http.StatusAccepted, "")
	code := s.gw.codeTo(t, n, phone)
	if strings.Contains(r.raw, code) {
		t.Fatalf("the API answered the code: %s", r.raw)
	}
	signUp := func(code string) apiResp {
		return callAPI(t, s.app, http.MethodPost, "/auth/sign-up", "", merge(creds, map[string]any{
			"username": "fc-reg", "password": i5Password + "-long", "phone_number": phone, "verification_code": code,
		}))
	}
	t.Run("a wrong verification code creates nobody", func(t *testing.T) {
		wantStatus(t, signUp("000000"), http.StatusUnprocessableEntity, "invalid_code")
		if code, _ := adminRequest(t, s.app, http.MethodGet, "/User/fc-reg", "", ""); code != http.StatusNotFound {
			t.Fatalf("GET /User/fc-reg = %d", code)
		}
	})
	t.Run("the right one creates the user with the phone verified and SMS two-factor on", func(t *testing.T) {
		r := signUp(code)
		wantStatus(t, r, http.StatusCreated, "")
		u, _ := r.body["user"].(map[string]any)
		if u["phoneNumber"] != phone || u["phoneVerified"] != true || len(r.strings(t, "recovery_codes")) != 10 {
			t.Fatalf("sign-up: %s", r.raw)
		}
		if tf, body := userTwoFactorOf(t, s.app, "fc-reg"); !tf.Enabled || tf.Method != "sms" {
			t.Fatalf("User.twoFactor = %+v: %s", tf, body)
		}
	})
	t.Run("the new user's password grant asks for the texted code", func(t *testing.T) {
		n := s.gw.mark()
		form := url.Values{"grant_type": {"password"}, "username": {"fc-reg"}, "password": {i5Password + "-long"}}
		wantStatus(t, tokenRequest(t, s.app, "freshcom", i5Secret, form), http.StatusForbidden, "mfa_required")
		form.Set("otp", s.gw.codeTo(t, n, phone))
		wantTokens(t, tokenRequest(t, s.app, "freshcom", i5Secret, form))
	})
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// freshcomLogin: Freshcom's password grant for a 2FA user fails without
// otp and sends the code; the same request with otp succeeds.
func (s *i5Suite) freshcomLogin(t *testing.T) {
	const phone = "+14155550103"
	s.smsUser(t, "fc-login", phone)
	n := s.gw.mark()
	r := s.password(t, "mobile", "fc-login", url.Values{"scope": {"openid"}})
	wantStatus(t, r, http.StatusForbidden, "mfa_required")
	if r.str("mfa_token") == "" || r.str("access_token") != "" || r.str("refresh_token") != "" {
		t.Fatalf("403: %s", r.raw)
	}
	code := s.gw.codeTo(t, n, phone)
	if strings.Contains(r.raw, code) {
		t.Fatalf("the token endpoint answered the code: %s", r.raw)
	}
	t.Run("the same request with the texted code as otp gets tokens that say pwd otp mfa", func(t *testing.T) {
		r := s.password(t, "mobile", "fc-login", url.Values{"scope": {"openid offline_access"}, "otp": {code}})
		wantTokens(t, r)
		if r.str("refresh_token") == "" {
			t.Fatalf("no refresh token: %s", r.raw)
		}
		wantMFAAMR(t, s.app, r)
	})
	t.Run("the code works once", func(t *testing.T) {
		wantStatus(t, s.password(t, "mobile", "fc-login", url.Values{"otp": {code}}), http.StatusBadRequest, "invalid_grant")
	})
}

// --- the mfa-otp grant -------------------------------------------------------

func (s *i5Suite) mfaOTPGrant(t *testing.T) {
	const phone = "+14155550104"
	recovery := s.smsUser(t, "grant-sue", phone)
	grant := func(client, token, otp string) apiResp {
		return tokenRequest(t, s.app, client, i5Secret, url.Values{
			"grant_type": {"urn:gatehouse:grant-type:mfa-otp"}, "mfa_token": {token}, "otp": {otp}, "scope": {"openid"},
		})
	}
	mfaToken := func(client string) (string, string) {
		n := s.gw.mark()
		r := s.password(t, client, "grant-sue", nil)
		wantStatus(t, r, http.StatusForbidden, "mfa_required")
		return r.str("mfa_token"), s.gw.codeTo(t, n, phone)
	}
	token, code := mfaToken("mobile")
	t.Run("the mfa_token and the texted code get tokens", func(t *testing.T) {
		r := grant("mobile", token, code)
		wantTokens(t, r)
		wantMFAAMR(t, s.app, r)
	})
	t.Run("the spent mfa_token is refused, even with a new valid code", func(t *testing.T) {
		_, fresh := mfaToken("mobile")
		wantStatus(t, grant("mobile", token, fresh), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("another client cannot use the mfa_token", func(t *testing.T) {
		other, code := mfaToken("mobile")
		wantStatus(t, grant("mobile2", other, code), http.StatusBadRequest, "invalid_grant")
		t.Run("and its client still can", func(t *testing.T) { wantTokens(t, grant("mobile", other, code)) })
	})
	t.Run("a recovery code works through both grants", func(t *testing.T) {
		wantTokens(t, s.password(t, "mobile", "grant-sue", url.Values{"otp": {recovery[0]}}))
		tok, _ := mfaToken("mobile")
		wantTokens(t, grant("mobile", tok, recovery[1]))
		wantStatus(t, s.password(t, "mobile", "grant-sue", url.Values{"otp": {recovery[0]}}), http.StatusBadRequest, "invalid_grant")
	})
}

// --- Authing -----------------------------------------------------------------

// authingTOTP: list authenticators, associate TOTP (secret, URI, QR,
// recovery codes), confirm it, verify a code against a sign-in's mfaToken,
// verify a recovery code (which issues new ones), delete the authenticator.
func (s *i5Suite) authingTOTP(t *testing.T) {
	s.user(t, "au-tina", "")
	at := s.bearer(t, "au-tina")
	list := func(at string) []map[string]any {
		r := callAPI(t, s.app, http.MethodGet, "/auth/mfa/authenticators", at, nil)
		wantStatus(t, r, http.StatusOK, "")
		return r.list(t, "authenticators")
	}
	if got := list(at); len(got) != 0 {
		t.Fatalf("authenticators before any: %v", got)
	}
	a := &authenticator{user: "au-tina"}
	var pending string
	t.Run("associating returns the secret, the otpauth URI and a QR of that URI", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/totp", at, map[string]any{})
		wantStatus(t, r, http.StatusOK, "")
		a.secret, pending = r.str("secret"), r.str("pending_token")
		checkOTPAuthURI(t, r.str("otpauth_uri"), a.secret, i5Issuer, "au-tina@example.com")
		png, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.str("qr"), "data:image/png;base64,"))
		if err != nil || !strings.HasPrefix(r.str("qr"), "data:image/png;base64,") {
			t.Fatalf("qr: %.60q: %v", r.str("qr"), err)
		}
		if got := decodeQR(t, png); got != r.str("otpauth_uri") {
			t.Fatalf("the QR says %q, the answer %q", got, r.str("otpauth_uri"))
		}
	})
	t.Run("a wrong confirmation code is refused and enables nothing", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/totp/confirm", at, map[string]any{"pending_token": pending, "code": wrongCode(t, a.secret)})
		wantStatus(t, r, http.StatusUnprocessableEntity, "invalid_code")
		if len(list(at)) != 0 {
			t.Fatal("enabled by a wrong code")
		}
	})
	t.Run("the app's code confirms it and returns 10 recovery codes once", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/totp/confirm", at, map[string]any{"pending_token": pending, "code": a.next(t)})
		wantStatus(t, r, http.StatusOK, "")
		a.recovery = r.strings(t, "recovery_codes")
		if len(a.recovery) != 10 {
			t.Fatalf("%d recovery codes", len(a.recovery))
		}
		got := list(at)
		if len(got) != 1 || got[0]["type"] != "totp" || got[0]["recoveryCodesRemaining"] != float64(10) {
			t.Fatalf("authenticators: %v", got)
		}
		if _, body := userTwoFactorOf(t, s.app, "au-tina"); strings.Contains(body, a.secret) {
			t.Fatal("the admin API shows the secret")
		}
	})
	var fresh string
	t.Run("a sign-in needs the second factor, and a TOTP code verifies it", func(t *testing.T) {
		r := s.signIn(t, "mobile", "au-tina")
		if r.str("status") != "needs_second_factor" || r.str("access_token") != "" {
			t.Fatalf("sign-in: %s", r.raw)
		}
		var strategies []string
		for _, f := range r.list(t, "factors") {
			strategies = append(strategies, fmt.Sprint(f["strategy"]))
		}
		if !slices.Contains(strategies, "totp") || !slices.Contains(strategies, "backup_code") {
			t.Fatalf("factors %v", strategies)
		}
		done := s.attempt(t, "mobile", r.str("mfa_token"), "totp", a.next(t))
		wantComplete(t, done)
		wantMFAAMR(t, s.app, done)
		fresh = done.str("access_token")
	})
	t.Run("a recovery code verifies a sign-in and comes back with a new set", func(t *testing.T) {
		token := s.mfaToken(t, "mobile", "au-tina")
		r := callAPI(t, s.app, http.MethodPost, "/auth/mfa/recovery-codes/verify", "", map[string]any{
			"client_id": "mobile", "client_secret": i5Secret, "mfa_token": token, "code": a.recovery[0],
		})
		wantComplete(t, r)
		renewed := r.strings(t, "recovery_codes")
		if len(renewed) != 10 || slices.Contains(renewed, a.recovery[1]) {
			t.Fatalf("new recovery codes: %v", renewed)
		}
		t.Run("and the old set stops working", func(t *testing.T) {
			token := s.mfaToken(t, "mobile", "au-tina")
			wantStatus(t, s.attempt(t, "mobile", token, "backup_code", a.recovery[1]), http.StatusUnprocessableEntity, "invalid_code")
			wantComplete(t, s.attempt(t, "mobile", token, "backup_code", renewed[0]))
		})
		a.recovery = renewed[1:]
	})
	t.Run("deleting needs a current code, then the account signs in with the password alone", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodDelete, "/auth/mfa/totp", fresh, map[string]any{"code": wrongCode(t, a.secret)})
		wantStatus(t, r, http.StatusUnprocessableEntity, "invalid_code")
		r = callAPI(t, s.app, http.MethodDelete, "/auth/mfa/totp", fresh, map[string]any{"code": a.next(t)})
		if r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
		if got := list(fresh); len(got) != 0 {
			t.Fatalf("authenticators after delete: %v", got)
		}
		wantTokens(t, s.password(t, "mobile", "au-tina", nil))
	})
}

// --- Clerk -------------------------------------------------------------------

// clerk: a sign-in in needs_second_factor, prepare phone_code (naming the
// phone), attempt it; attempt totp without any prepare.
func (s *i5Suite) clerk(t *testing.T) {
	const phone = "+14155550105"
	s.smsUser(t, "cl-sam", phone)
	r := s.signIn(t, "mobile", "cl-sam")
	token := r.str("mfa_token")
	t.Run("the sign-in lists the phone factor with a masked number", func(t *testing.T) {
		if r.str("status") != "needs_second_factor" || token == "" {
			t.Fatalf("sign-in: %s", r.raw)
		}
		found := false
		for _, f := range r.list(t, "factors") {
			if f["strategy"] == "phone_code" && f["destination_id"] == "phone" && f["destination"] == twofactor.MaskDestination(phone) {
				found = true
			}
		}
		if !found || strings.Contains(r.raw, phone) {
			t.Fatalf("factors: %s", r.raw)
		}
	})
	code := s.preparedCode(t, "mobile", token, phone)
	t.Run("a wrong phone code is 422", func(t *testing.T) {
		wantStatus(t, s.attempt(t, "mobile", token, "phone_code", wrongSix(code)), http.StatusUnprocessableEntity, "invalid_code")
	})
	t.Run("the prepared code completes the sign-in", func(t *testing.T) {
		r := s.attempt(t, "mobile", token, "phone_code", code)
		wantComplete(t, r)
		wantMFAAMR(t, s.app, r)
	})
	t.Run("totp needs no prepare", func(t *testing.T) {
		a := s.totpUser(t, "cl-tom")
		token := s.mfaToken(t, "mobile", "cl-tom")
		wantComplete(t, s.attempt(t, "mobile", token, "totp", a.next(t)))
	})
}

// wrongSix is six digits that differ from code.
func wrongSix(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// --- bad input ---------------------------------------------------------------

func (s *i5Suite) badCodes(t *testing.T) {
	const phoneA, phoneB = "+14155550106", "+14155550107"
	s.smsUser(t, "bad-ann", phoneA)
	s.smsUser(t, "bad-bob", phoneB)

	t.Run("malformed codes are refused like wrong ones, never a 500", func(t *testing.T) {
		token := s.mfaToken(t, "mobile", "bad-bob")
		for _, c := range []string{"12345", "1234567", "abcdef"} {
			wantStatus(t, s.attempt(t, "mobile", token, "phone_code", c), http.StatusUnprocessableEntity, "invalid_code")
		}
		wantStatus(t, s.attempt(t, "mobile", token, "phone_code", ""), http.StatusBadRequest, "invalid_request")
		// A right code clears the three failures before the lockout.
		wantComplete(t, s.attempt(t, "mobile", token, "phone_code", s.preparedCode(t, "mobile", token, phoneB)))
	})
	t.Run("another user's code is refused", func(t *testing.T) {
		tokenA := s.mfaToken(t, "mobile", "bad-ann")
		codeA := s.preparedCode(t, "mobile", tokenA, phoneA)
		tokenB := s.mfaToken(t, "mobile", "bad-bob")
		codeB := s.preparedCode(t, "mobile", tokenB, phoneB)
		if codeA != codeB {
			wantStatus(t, s.attempt(t, "mobile", tokenB, "phone_code", codeA), http.StatusUnprocessableEntity, "invalid_code")
		}
		wantComplete(t, s.attempt(t, "mobile", tokenB, "phone_code", codeB))
		wantComplete(t, s.attempt(t, "mobile", tokenA, "phone_code", codeA))
	})
	t.Run("a code sent for another sign-in of the same user is refused, and stays good for its own", func(t *testing.T) {
		first := s.mfaToken(t, "mobile", "bad-ann")
		code := s.preparedCode(t, "mobile", first, phoneA)
		second := s.mfaToken(t, "mobile", "bad-ann")
		wantStatus(t, s.attempt(t, "mobile", second, "phone_code", code), http.StatusUnprocessableEntity, "invalid_code")
		wantComplete(t, s.attempt(t, "mobile", first, "phone_code", code))
	})
	var at string
	t.Run("a used code is refused for the next sign-in", func(t *testing.T) {
		first := s.mfaToken(t, "mobile", "bad-ann")
		code := s.preparedCode(t, "mobile", first, phoneA)
		done := s.attempt(t, "mobile", first, "phone_code", code)
		wantComplete(t, done)
		at = done.str("access_token")
		next := s.mfaToken(t, "mobile", "bad-ann")
		wantStatus(t, s.attempt(t, "mobile", next, "phone_code", code), http.StatusUnprocessableEntity, "invalid_code")
	})
	t.Run("a verification code to the same phone does not pass as a sign-in code", func(t *testing.T) {
		n := s.gw.mark()
		r := callAPI(t, s.app, http.MethodPost, "/auth/verification-codes", at, map[string]any{"channel": "sms", "destination": phoneA})
		wantStatus(t, r, http.StatusAccepted, "")
		verification := s.gw.codeTo(t, n, phoneA)
		token := s.mfaToken(t, "mobile", "bad-ann")
		wantStatus(t, s.attempt(t, "mobile", token, "phone_code", verification), http.StatusUnprocessableEntity, "invalid_code")
		wantComplete(t, s.attempt(t, "mobile", token, "phone_code", s.preparedCode(t, "mobile", token, phoneA)))
	})
}

func (s *i5Suite) mfaTokenRules(t *testing.T) {
	const phone = "+14155550108"
	s.smsUser(t, "tok-una", phone)
	token := s.mfaToken(t, "mobile", "tok-una")
	wantComplete(t, s.attempt(t, "mobile", token, "phone_code", s.preparedCode(t, "mobile", token, phone)))
	t.Run("a completed mfa_token is refused", func(t *testing.T) {
		wantStatus(t, s.prepare(t, "mobile", token), http.StatusUnauthorized, "invalid_mfa_token")
		wantStatus(t, s.attempt(t, "mobile", token, "phone_code", "123456"), http.StatusUnauthorized, "invalid_mfa_token")
	})
	t.Run("another client's mfa_token is refused", func(t *testing.T) {
		other := s.mfaToken(t, "mobile", "tok-una")
		wantStatus(t, s.prepare(t, "mobile2", other), http.StatusUnauthorized, "invalid_mfa_token")
		code := s.preparedCode(t, "mobile", other, phone)
		wantStatus(t, s.attempt(t, "mobile2", other, "phone_code", code), http.StatusUnauthorized, "invalid_mfa_token")
		wantComplete(t, s.attempt(t, "mobile", other, "phone_code", code))
	})
	t.Run("a made-up mfa_token is refused", func(t *testing.T) {
		wantStatus(t, s.prepare(t, "mobile", token+"x"), http.StatusUnauthorized, "invalid_mfa_token")
		wantStatus(t, s.prepare(t, "mobile", "not-a-token"), http.StatusUnauthorized, "invalid_mfa_token")
	})
}

func (s *i5Suite) sendLimit(t *testing.T) {
	const phone = "+14155550109"
	s.smsUser(t, "lim-lou", phone)
	token := s.mfaToken(t, "mobile", "lim-lou")
	n := s.gw.mark()
	for i := range twofactor.SendLimit {
		if r := s.prepare(t, "mobile", token); r.status != http.StatusOK {
			t.Fatalf("send %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := s.prepare(t, "mobile", token)
	wantStatus(t, r, http.StatusTooManyRequests, "too_many_requests")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if got := len(s.gw.since(t, n)); got != twofactor.SendLimit {
		t.Fatalf("the gateway got %d codes, want %d", got, twofactor.SendLimit)
	}
	t.Run("the password grant sends no more either, but still answers mfa_required", func(t *testing.T) {
		wantStatus(t, s.password(t, "mobile", "lim-lou", nil), http.StatusForbidden, "mfa_required")
		if got := len(s.gw.since(t, n)); got != twofactor.SendLimit {
			t.Fatalf("the gateway got %d codes", got)
		}
	})
	t.Run("a code already sent still signs in", func(t *testing.T) {
		wantComplete(t, s.attempt(t, "mobile", token, "phone_code", s.gw.codeTo(t, n, phone)))
	})
}

func (s *i5Suite) unverified(t *testing.T) {
	s.user(t, "unv-uma", "phoneNumber: '+14155550110'\n")
	at := s.bearer(t, "unv-uma")
	for _, path := range []string{"/auth/mfa/sms", "/auth/mfa/email"} {
		t.Run(path+" is 422 destination_not_verified", func(t *testing.T) {
			wantStatus(t, callAPI(t, s.app, http.MethodPost, path, at, map[string]any{}), http.StatusUnprocessableEntity, "destination_not_verified")
		})
	}
	if tf, body := userTwoFactorOf(t, s.app, "unv-uma"); tf.Enabled {
		t.Fatalf("two-factor turned on: %s", body)
	}
	t.Run("another account's verified phone cannot be verified again", func(t *testing.T) {
		r := callAPI(t, s.app, http.MethodPost, "/auth/verification-codes", at, map[string]any{"channel": "sms", "destination": "+14155550101"})
		wantStatus(t, r, http.StatusConflict, "destination_taken")
	})
}

// --- hosted pages ------------------------------------------------------------

func (s *i5Suite) hostedSMSLogin(t *testing.T) {
	const phone = "+14155550111"
	s.smsUser(t, "web-sam", phone)
	l := newOAuthLogin(s.app, "mywebapp")
	b := browserFor(t, s.app)
	n := s.gw.mark()
	p := passwordStep(t, b, l.URL, "web-sam")
	expectCodePrompt(t, p)
	first := s.gw.codeTo(t, n, phone)
	t.Run("the prompt names the masked phone number", func(t *testing.T) {
		text := pageText(t, p, "code-prompt")
		if !strings.Contains(text, twofactor.MaskDestination(phone)) || strings.Contains(p.body, phone) || strings.Contains(p.body, first) {
			t.Fatalf("prompt %q:\n%s", text, p.body)
		}
		if !has(t, p, "recovery-hint") {
			t.Fatal("no recovery-code hint")
		}
	})
	n = s.gw.mark()
	resend := elementByID(parseHTML(t, p), "resend-code")
	if resend == nil {
		t.Fatalf("no #resend-code:\n%s", p.body)
	}
	href, _ := attr(resend, "href")
	target, err := p.url.Parse(href)
	if err != nil {
		t.Fatal(err)
	}
	p = b.get(target.String())
	expectCodePrompt(t, p)
	again := s.gw.codeTo(t, n, phone)
	t.Run("send again delivered a new code that finishes the sign-in", func(t *testing.T) {
		expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, again))), "pwd", "otp", "mfa")
	})
}

func (s *i5Suite) hostedSettings(t *testing.T) {
	const phone = "+14155550112"
	s.user(t, "web-eve", "")
	b := browserFor(t, s.app)
	signInPassword(t, b, "web-eve")
	p := b.get(s.app.URL + pathTwoFactorSettings)
	if !has(t, p, "switch-sms") {
		t.Fatalf("the settings page offers no text messages:\n%s", p.body)
	}
	p = b.get(s.app.URL + "/auth/two-factor/method?method=sms")
	n := s.gw.mark()
	p = submitForm(t, b, p, "destination", url.Values{"destination": {phone}})
	code := s.gw.codeTo(t, n, phone)
	t.Run("a wrong code is refused", func(t *testing.T) {
		expectRefused(t, submitForm(t, b, p, "code", url.Values{"code": {wrongSix(code)}}), "code", "Invalid code", "a wrong verification code")
	})
	t.Run("the texted code turns text messages on", func(t *testing.T) {
		p := submitForm(t, b, p, "code", url.Values{"code": {code}})
		if got := recoveryCodes(t, p); len(got) != 10 {
			t.Fatalf("%d recovery codes", len(got))
		}
		if tf, body := userTwoFactorOf(t, s.app, "web-eve"); !tf.Enabled || tf.Method != "sms" || !strings.Contains(body, `"phoneVerified":true`) {
			t.Fatalf("User after the switch: %s", body)
		}
	})
	t.Run("the next hosted login asks for a texted code", func(t *testing.T) {
		l := newOAuthLogin(s.app, "mywebapp")
		b := browserFor(t, s.app)
		n := s.gw.mark()
		p := passwordStep(t, b, l.URL, "web-eve")
		expectCodePrompt(t, p)
		expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, s.gw.codeTo(t, n, phone)))), "pwd", "otp", "mfa")
	})
}

// --- defaultMethod for users the admin creates -------------------------------

func TestDefaultMethodForAdminCreatedUsersEndToEnd(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			app := startApp(t, be.Open(t))
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			putResource(t, app, "/Client/mywebapp", webClientYAML)
			putUser(t, app, "dm-old", "")
			putResource(t, app, "/AuthConfig/default", "twoFactor:\n  issuerName: "+i5Issuer+"\n  defaultMethod: totp\n")
			putUser(t, app, "dm-new", "")
			password := func(user, otp string) apiResp {
				form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {tfPassword}}
				if otp != "" {
					form.Set("otp", otp)
				}
				return tokenRequest(t, app, "mobile", i5Secret, form)
			}
			t.Run("a user that existed before is unchanged", func(t *testing.T) {
				wantTokens(t, password("dm-old", ""))
			})
			t.Run("the new user's password grant is refused until an app is set up", func(t *testing.T) {
				r := password("dm-new", "")
				wantStatus(t, r, http.StatusForbidden, "mfa_required")
				if r.str("mfa_token") != "" || r.str("access_token") != "" {
					t.Fatalf("403: %s", r.raw)
				}
			})
			var a *authenticator
			t.Run("the first hosted login sets up the app, then the client gets pwd otp mfa", func(t *testing.T) {
				l := newOAuthLogin(app, "mywebapp")
				b := browserFor(t, app)
				p := passwordStep(t, b, l.URL, "dm-new")
				e := readEnrolmentPage(t, p)
				a = &authenticator{user: "dm-new", secret: e.secret}
				p = submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}})
				if len(recoveryCodes(t, p)) != 10 {
					t.Fatal("no recovery codes")
				}
				expectAMR(t, l.exchange(t, toClient(t, b, continueLogin(t, b, p))), "pwd", "otp", "mfa")
			})
			t.Run("then the password grant takes the app's code", func(t *testing.T) {
				if a == nil {
					t.Fatal("the enrolment above failed")
				}
				wantStatus(t, password("dm-new", ""), http.StatusForbidden, "mfa_required")
				wantTokens(t, password("dm-new", a.next(t)))
			})
		})
	}
}
