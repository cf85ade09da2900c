package api_test

import (
	"github.com/gatehouse/gatehouse/internal/signin"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

func TestPasswordSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "pat", Email: "pat@example.com"})

		t.Run("a user without a second factor gets tokens at once", func(t *testing.T) {
			r := e.post(api.PathSignIn, map[string]any{"username": "pat", "password": userPassword, "client_id": spaClient, "scope": "profile"})
			want(t, r, http.StatusOK, "")
			if r.str("status") != api.StatusComplete || r.str("access_token") == "" || r.str("refresh_token") == "" {
				t.Fatalf("want complete with tokens, got %s", r.raw)
			}
			if r.str("scope") == "" {
				t.Errorf("the granted scope is missing: %s", r.raw)
			}
			if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd"}) {
				t.Errorf("amr %v, want [pwd]", amr)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
			}
		})

		t.Run("the e-mail address works as the username", func(t *testing.T) {
			r := e.post(api.PathSignIn, map[string]any{"username": "pat@example.com", "password": userPassword, "client_id": spaClient})
			want(t, r, http.StatusOK, "")
		})

		t.Run("a form-encoded sign-in works like JSON", func(t *testing.T) {
			r := e.do(req{path: api.PathSignIn, body: url.Values{"username": {"pat"}, "password": {userPassword}, "client_id": {spaClient}}})
			want(t, r, http.StatusOK, "")
			if r.str("status") != api.StatusComplete {
				t.Fatalf("got %s", r.raw)
			}
		})

		t.Run("credentials in the query string of a POST are not read", func(t *testing.T) {
			q := url.Values{"username": {"pat"}, "password": {userPassword}, "client_id": {spaClient}}
			want(t, e.do(req{path: api.PathSignIn + "?" + q.Encode()}), http.StatusBadRequest, "invalid_request")
		})

		t.Run("a wrong password and an unknown user get the same answer", func(t *testing.T) {
			wrong := e.post(api.PathSignIn, map[string]any{"username": "pat", "password": "nope", "client_id": spaClient})
			unknown := e.post(api.PathSignIn, map[string]any{"username": "nobody", "password": userPassword, "client_id": spaClient})
			want(t, wrong, http.StatusUnauthorized, "invalid_credentials")
			want(t, unknown, http.StatusUnauthorized, "invalid_credentials")
			if wrong.raw != unknown.raw {
				t.Errorf("answers differ:\n%s\n%s", wrong.raw, unknown.raw)
			}
		})

		t.Run("the right password of a disabled account is told so; a wrong one is not", func(t *testing.T) {
			e.user(resource.User{ID: "olga", Email: "olga@example.com", Inactive: true})
			want(t, e.post(api.PathSignIn, map[string]any{"username": "olga", "password": userPassword, "client_id": spaClient}), http.StatusForbidden, "account_disabled")
			wrong := e.post(api.PathSignIn, map[string]any{"username": "olga", "password": "nope", "client_id": spaClient})
			want(t, wrong, http.StatusUnauthorized, "invalid_credentials")
			if strings.Contains(wrong.raw, "disabled") {
				t.Fatalf("a wrong password learns the account is disabled: %s", wrong.raw)
			}
		})

		t.Run("a confidential client must send its secret", func(t *testing.T) {
			base := map[string]any{"username": "pat", "password": userPassword, "client_id": backend}
			want(t, e.post(api.PathSignIn, base), http.StatusUnauthorized, "invalid_client")
			base["client_secret"] = "wrong"
			want(t, e.post(api.PathSignIn, base), http.StatusUnauthorized, "invalid_client")
			base["client_secret"] = backendKey
			want(t, e.post(api.PathSignIn, base), http.StatusOK, "")
			r := e.do(req{path: api.PathSignIn, basic: [2]string{backend, backendKey},
				body: map[string]any{"username": "pat", "password": userPassword}})
			want(t, r, http.StatusOK, "")
		})

		t.Run("clients the API cannot serve are refused", func(t *testing.T) {
			e.client(resource.Client{ID: "no-origins", GrantTypes: []string{"password"}})
			e.client(resource.Client{ID: "code-only", GrantTypes: []string{"authorization_code"}, AllowedOrigins: []string{appOrigin},
				Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RedirectURI: resource.StringList{"https://app.example/cb"}}}})
			cases := []struct {
				name, client string
				status       int
				code         string
			}{
				{"an unknown client", "ghost", http.StatusUnauthorized, "invalid_client"},
				{"a public client without allowed_origins", "no-origins", http.StatusUnauthorized, "invalid_client"},
				{"a client without the password grant", "code-only", http.StatusForbidden, "unauthorized_client"},
			}
			t.Run("a secret for a client that has none", func(t *testing.T) {
				r := e.post(api.PathSignIn, map[string]any{"username": "pat", "password": userPassword, "client_id": spaClient, "client_secret": "guess"})
				want(t, r, http.StatusUnauthorized, "invalid_client")
			})
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					r := e.post(api.PathSignIn, map[string]any{"username": "pat", "password": userPassword, "client_id": tc.client})
					want(t, r, tc.status, tc.code)
				})
			}
			want(t, e.post(api.PathSignIn, map[string]any{"username": "pat", "password": userPassword}), http.StatusBadRequest, "invalid_request")
		})
	})
}

// Clerk: sign-in → needs_second_factor → attempt totp (no prepare needed).
func TestClerkTOTPSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		secret, codes := e.totpUser("tina")

		r := e.signIn("tina")
		want(t, r, http.StatusOK, "")
		if r.str("status") != api.StatusNeedsSecondFactor || r.str("mfa_token") == "" || r.str("access_token") != "" {
			t.Fatalf("want needs_second_factor with an mfa_token and no tokens, got %s", r.raw)
		}
		if got := strategies(r); !slices.Equal(got, []string{"totp", "backup_code"}) {
			t.Fatalf("factors %v, want [totp backup_code]", got)
		}
		token := r.str("mfa_token")

		t.Run("a wrong code is refused with 422", func(t *testing.T) {
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "totp", "code": "000000"})
			want(t, r, http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("the current code completes the sign-in with otp and mfa in amr", func(t *testing.T) {
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)})
			want(t, r, http.StatusOK, "")
			if r.str("status") != api.StatusComplete || r.str("access_token") == "" {
				t.Fatalf("want complete with tokens, got %s", r.raw)
			}
			if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr %v, want [pwd otp mfa]", amr)
			}
		})

		t.Run("the mfa_token completes only once", func(t *testing.T) {
			e.clock.Advance(30 * time.Second)
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)})
			want(t, r, http.StatusUnauthorized, "invalid_mfa_token")
		})

		t.Run("a code already used is refused on a new sign-in", func(t *testing.T) {
			code := e.totp(secret)
			first := e.signIn("tina").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": first, "client_id": spaClient, "strategy": "totp", "code": code}), http.StatusOK, "")
			second := e.signIn("tina").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": second, "client_id": spaClient, "strategy": "totp", "code": code}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("a recovery code works as backup_code once", func(t *testing.T) {
			tok := e.signIn("tina").str("mfa_token")
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "backup_code", "code": codes[0]})
			want(t, r, http.StatusOK, "")
			if n, _ := r.body["recovery_codes_remaining"].(float64); n != 9 {
				t.Errorf("recovery_codes_remaining %v, want 9", r.body["recovery_codes_remaining"])
			}
			tok = e.signIn("tina").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "backup_code", "code": codes[0]}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("a TOTP code is not a backup_code", func(t *testing.T) {
			e.clock.Advance(30 * time.Second)
			tok := e.signIn("tina").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "backup_code", "code": e.totp(secret)}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("a strategy the user does not have is refused", func(t *testing.T) {
			tok := e.signIn("tina").str("mfa_token")
			for _, st := range []string{"phone_code", "email_code", "face"} {
				r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": st, "code": "123456"})
				want(t, r, http.StatusBadRequest, "strategy_not_available")
			}
			want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "backup_code"}),
				http.StatusBadRequest, "strategy_not_preparable")
		})
	})
}

// Clerk and Freshcom's third sample ("log in with TFA"): sign-in →
// prepare phone_code → the code arrives at the gateway → attempt.
func TestPhoneCodeSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.smsUser("sam", alicePhone)
		e.smsUser("bob", bobPhone)

		r := e.signIn("sam")
		want(t, r, http.StatusOK, "")
		if r.str("status") != api.StatusNeedsSecondFactor {
			t.Fatalf("got %s", r.raw)
		}
		factors := r.list("factors")
		if len(factors) != 2 {
			t.Fatalf("factors %v, want phone_code and backup_code", factors)
		}
		f0, _ := factors[0].(map[string]any)
		if f0["strategy"] != "phone_code" || f0["destination_id"] != "phone" || f0["destination"] != twofactor.MaskDestination(alicePhone) {
			t.Fatalf("first factor %v, want phone_code to the masked phone", f0)
		}
		if f0["destination"] == alicePhone {
			t.Fatal("the phone number is not masked")
		}
		token := r.str("mfa_token")
		if n := e.gw.count(alicePhone); n != 0 {
			t.Fatalf("%d codes sent before prepare; Clerk sends on prepare only", n)
		}

		t.Run("an attempt before prepare has no code to match", func(t *testing.T) {
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "phone_code", "code": "123456"}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		prep := e.post(api.PathSignInPrepare, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "phone_code", "destination_id": "phone"})
		want(t, prep, http.StatusOK, "")
		p, _ := prep.body["prepared"].(map[string]any)
		if p["strategy"] != "phone_code" || p["destination"] != twofactor.MaskDestination(alicePhone) {
			t.Fatalf("prepared %v", p)
		}
		code := e.gw.last(t, alicePhone)
		if strings.Contains(prep.raw, code) {
			t.Fatal("the prepare answer contains the code")
		}

		t.Run("a code sent for another sign-in of the same user is refused", func(t *testing.T) {
			other := e.signIn("sam").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": other, "client_id": spaClient, "strategy": "phone_code", "code": code}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("another user's code is refused", func(t *testing.T) {
			bobTok := e.signIn("bob").str("mfa_token")
			want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": bobTok, "client_id": spaClient, "strategy": "phone_code"}), http.StatusOK, "")
			bobCode := e.gw.last(t, bobPhone)
			if bobCode == code {
				t.Skip("the two random codes happen to be equal")
			}
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "phone_code", "code": bobCode}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("the mfa_token of another client is refused", func(t *testing.T) {
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": otherClient, "strategy": "phone_code", "code": code}),
				http.StatusUnauthorized, "invalid_mfa_token")
		})

		t.Run("the right code completes the sign-in", func(t *testing.T) {
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "phone_code", "code": code})
			want(t, r, http.StatusOK, "")
			if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr %v", amr)
			}
		})

		t.Run("the code and the mfa_token are spent", func(t *testing.T) {
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": token, "client_id": spaClient, "strategy": "phone_code", "code": code}),
				http.StatusUnauthorized, "invalid_mfa_token")
			fresh := e.signIn("sam").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": fresh, "client_id": spaClient, "strategy": "phone_code", "code": code}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("an expired mfa_token is refused", func(t *testing.T) {
			tok := e.signIn("sam").str("mfa_token")
			want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"}), http.StatusOK, "")
			c := e.gw.last(t, alicePhone)
			e.clock.Advance(twofactor.MFATokenTTL + time.Second)
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code", "code": c}),
				http.StatusUnauthorized, "invalid_mfa_token")
		})

		t.Run("a garbled mfa_token is refused", func(t *testing.T) {
			for _, tok := range []string{"x", token + "x", "AAAA"} {
				want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code", "code": "123456"}),
					http.StatusUnauthorized, "invalid_mfa_token")
			}
		})
	})
}

func TestSendAgainStopsAtTheLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.smsUser("sam", alicePhone)
		tok := e.signIn("sam").str("mfa_token")
		for range twofactor.SendLimit {
			r := e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"})
			want(t, r, http.StatusOK, "")
		}
		r := e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"})
		want(t, r, http.StatusTooManyRequests, "too_many_requests")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After header")
		}
		if n := e.gw.count(alicePhone); n != twofactor.SendLimit {
			t.Errorf("%d codes delivered, want %d", n, twofactor.SendLimit)
		}
		t.Run("the latest code still signs in", func(t *testing.T) {
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code", "code": e.gw.last(t, alicePhone)}),
				http.StatusOK, "")
		})
	})
}

func TestWrongCodesLockTheFactorForEveryPath(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.totpUser("lou")
		tok := e.signIn("lou").str("mfa_token")
		for range twofactor.MaxAttempts {
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp", "code": "000000"}),
				http.StatusUnprocessableEntity, "invalid_code")
		}
		t.Run("the right code during the lock gets the same answer", func(t *testing.T) {
			fresh := e.signIn("lou").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": fresh, "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)}),
				http.StatusUnprocessableEntity, "invalid_code")
		})
		t.Run("after the lock the right code works", func(t *testing.T) {
			e.clock.Advance(twofactor.LockoutBase + time.Second)
			fresh := e.signIn("lou").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": fresh, "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)}),
				http.StatusOK, "")
		})
	})
}

// A client or AuthConfig that requires a second factor: a user without one
// enrols inside the sign-in.
func TestRequiredSecondFactorEnrolsDuringSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.Required = true })
		e.user(resource.User{ID: "rae", Email: "rae@example.com", PhoneNumber: alicePhone, PhoneVerified: true})
		e.user(resource.User{ID: "ted", Email: "ted@example.com"})

		t.Run("TOTP: associate, then the first code completes", func(t *testing.T) {
			r := e.signIn("ted")
			want(t, r, http.StatusOK, "")
			if r.str("status") != api.StatusNeedsEnrollment || r.str("mfa_token") == "" {
				t.Fatalf("want needs_enrollment, got %s", r.raw)
			}
			tok := r.str("mfa_token")
			en := e.post(api.PathSignInEnroll, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"})
			want(t, en, http.StatusOK, "")
			assoc, _ := en.body["totp"].(map[string]any)
			secret, _ := assoc["secret"].(string)
			pending, _ := assoc["pending_token"].(string)
			if secret == "" || pending == "" {
				t.Fatalf("association %s", en.raw)
			}
			want(t, e.post(api.PathSignInEnrollDone, map[string]any{"mfa_token": tok, "client_id": spaClient, "pending_token": pending, "code": "000000"}),
				http.StatusUnprocessableEntity, "invalid_code")
			done := e.post(api.PathSignInEnrollDone, map[string]any{"mfa_token": tok, "client_id": spaClient, "pending_token": pending, "code": e.totp(secret)})
			want(t, done, http.StatusOK, "")
			if done.str("status") != api.StatusComplete || len(done.list("recovery_codes")) != twofactor.RecoveryCodeN {
				t.Fatalf("want complete with 10 recovery codes, got %s", done.raw)
			}
			if amr := e.amrOf(done.str("access_token")); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr %v", amr)
			}
			if r := e.signIn("ted"); r.str("status") != api.StatusNeedsSecondFactor {
				t.Errorf("the next sign-in: %s", r.raw)
			}
		})

		t.Run("SMS: enable for the verified phone, then prepare and attempt", func(t *testing.T) {
			r := e.signIn("rae")
			if r.str("status") != api.StatusNeedsEnrollment {
				t.Fatalf("got %s", r.raw)
			}
			if got := strategiesOf(r.list("enrollable")); !slices.Equal(got, []string{"totp", "phone_code", "email_code"}) && !slices.Equal(got, []string{"totp", "phone_code"}) {
				t.Fatalf("enrollable %v", got)
			}
			tok := r.str("mfa_token")
			want(t, e.post(api.PathSignInEnroll, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "email_code"}),
				http.StatusUnprocessableEntity, "destination_not_verified")
			en := e.post(api.PathSignInEnroll, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"})
			want(t, en, http.StatusOK, "")
			if en.str("status") != api.StatusNeedsSecondFactor || len(en.list("recovery_codes")) != twofactor.RecoveryCodeN {
				t.Fatalf("got %s", en.raw)
			}
			want(t, e.post(api.PathSignInEnroll, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"}),
				http.StatusConflict, "already_enabled")
			want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"}), http.StatusOK, "")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code", "code": e.gw.last(t, alicePhone)}),
				http.StatusOK, "")
		})
	})
}

func TestRegisterRefusesTwoFactorsWithOneStrategy(t *testing.T) {
	h := &api.Handler{SignIn: &signin.Engine{Factors: []api.Factor{faceFactor{}, faceFactor{}}}}
	defer func() {
		if recover() == nil {
			t.Fatal("Register accepted two factors named face")
		}
	}()
	h.Register(http.NewServeMux())
}

// Aidbox's webhook: with one configured, preparing totp pushes the current
// code, which then signs in once like a typed one.
func TestPreparingTOTPPushesTheCurrentCode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.totpUser("tom")
		tok := e.signIn("tom").str("mfa_token")
		want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"}), http.StatusOK, "")
		pushed := e.gw.last(t, "")
		if pushed != e.totp(secret) {
			t.Fatalf("pushed %q, want the current code", pushed)
		}
		want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp", "code": pushed}), http.StatusOK, "")

		e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.Webhook = nil })
		tok = e.signIn("tom").str("mfa_token")
		want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"}),
			http.StatusBadRequest, "strategy_not_preparable")
	})
}

func strategies(r resp) []string { return strategiesOf(r.list("factors")) }

func strategiesOf(l []any) []string {
	var out []string
	for _, f := range l {
		m, _ := f.(map[string]any)
		s, _ := m["strategy"].(string)
		out = append(out, s)
	}
	return out
}
