package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Authing: list authenticators, associate TOTP, confirm, verify at sign-in,
// verify a recovery code (which issues new ones), delete.
func TestAuthingTOTPAuthenticator(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "ann", Email: "ann@example.com"})
		at := e.accessToken("ann")

		t.Run("without a token the API answers 401 with a Bearer challenge", func(t *testing.T) {
			r := e.do(req{method: http.MethodGet, path: api.PathAuthenticators})
			want(t, r, http.StatusUnauthorized, "invalid_token")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			want(t, e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: "not-a-token"}), http.StatusUnauthorized, "invalid_token")
		})

		t.Run("a third-party client's token cannot manage the account", func(t *testing.T) {
			// A token minted while "partner" could sign users in; then the
			// client becomes what third-party apps are: code flow, not
			// first-party.
			e.client(resource.Client{ID: "partner", GrantTypes: []string{"password"}, AllowedOrigins: []string{"https://partner.example"}})
			tokens, err := e.prov.IssueTokens(context.Background(), "partner", oauth.Grant{Subject: "ann", AMR: []string{"pwd"}})
			if err != nil {
				t.Fatal(err)
			}
			partner, _ := tokens["access_token"].(string)
			e.client(resource.Client{ID: "partner", GrantTypes: []string{"authorization_code"}, AllowedOrigins: []string{"https://partner.example"},
				Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RedirectURI: resource.StringList{"https://partner.example/cb"}}}})
			for _, q := range []req{
				{path: api.PathTOTP, bearer: partner},
				{method: http.MethodGet, path: api.PathAuthenticators, bearer: partner},
				{path: api.PathVerificationCodes, bearer: partner, body: map[string]any{"channel": "email"}},
			} {
				want(t, e.do(q), http.StatusForbidden, "access_denied")
			}
		})

		t.Run("a new account lists no authenticator", func(t *testing.T) {
			r := e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: at})
			want(t, r, http.StatusOK, "")
			if len(r.list("authenticators")) != 0 {
				t.Fatalf("got %s", r.raw)
			}
		})

		start := e.do(req{path: api.PathTOTP, bearer: at})
		want(t, start, http.StatusOK, "")
		secret, uri, qr, pending := start.str("secret"), start.str("otpauth_uri"), start.str("qr"), start.str("pending_token")
		if secret == "" || pending == "" {
			t.Fatalf("association %s", start.raw)
		}
		if !strings.HasPrefix(uri, "otpauth://totp/Gatehouse%20Test:ann@example.com?secret="+secret) {
			t.Errorf("otpauth_uri %q", uri)
		}
		if !strings.HasPrefix(qr, "data:image/png;base64,") {
			t.Errorf("qr %.40q", qr)
		}

		t.Run("a wrong first code leaves TOTP off", func(t *testing.T) {
			want(t, e.do(req{path: api.PathTOTPConfirm, bearer: at, body: map[string]any{"pending_token": pending, "code": "000000"}}),
				http.StatusUnprocessableEntity, "invalid_code")
			if st, _ := e.tf.Status(context.Background(), "ann"); st.Enabled {
				t.Fatal("enabled after a wrong code")
			}
		})

		t.Run("another user's pending_token is refused", func(t *testing.T) {
			e.user(resource.User{ID: "eve", Email: "eve@example.com"})
			eve := e.accessToken("eve")
			want(t, e.do(req{path: api.PathTOTPConfirm, bearer: eve, body: map[string]any{"pending_token": pending, "code": e.totp(secret)}}),
				http.StatusBadRequest, "invalid_pending_token")
		})

		var recovery []string
		t.Run("the first code enables TOTP and shows 10 recovery codes once", func(t *testing.T) {
			r := e.do(req{path: api.PathTOTPConfirm, bearer: at, body: map[string]any{"pending_token": pending, "code": e.totp(secret)}})
			want(t, r, http.StatusOK, "")
			for _, c := range r.list("recovery_codes") {
				recovery = append(recovery, c.(string))
			}
			if len(recovery) != twofactor.RecoveryCodeN {
				t.Fatalf("got %s", r.raw)
			}
			l := e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: at})
			list := l.list("authenticators")
			if len(list) != 1 {
				t.Fatalf("got %s", l.raw)
			}
			a := list[0].(map[string]any)
			if a["id"] != "totp" || a["type"] != "totp" || a["recoveryCodesRemaining"] != float64(10) || a["enrolledAt"] == nil {
				t.Errorf("authenticator %v", a)
			}
			if strings.Contains(l.raw, secret) {
				t.Error("the list shows the secret")
			}
			want(t, e.do(req{path: api.PathTOTP, bearer: at}), http.StatusConflict, "already_enabled")
		})

		e.clock.Advance(30 * time.Second)
		t.Run("sign-in now asks for the TOTP code", func(t *testing.T) {
			r := e.signIn("ann")
			if r.str("status") != api.StatusNeedsSecondFactor {
				t.Fatalf("got %s", r.raw)
			}
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": r.str("mfa_token"), "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)}),
				http.StatusOK, "")
		})

		var fresh []string
		t.Run("verifying a recovery code signs in and replaces the set", func(t *testing.T) {
			tok := e.signIn("ann").str("mfa_token")
			want(t, e.post(api.PathRecoveryVerify, map[string]any{"mfa_token": tok, "client_id": spaClient, "code": "aaaaa-aaaaa"}),
				http.StatusUnprocessableEntity, "invalid_code")
			r := e.post(api.PathRecoveryVerify, map[string]any{"mfa_token": tok, "client_id": spaClient, "code": recovery[3]})
			want(t, r, http.StatusOK, "")
			if r.str("status") != api.StatusComplete || r.str("access_token") == "" {
				t.Fatalf("got %s", r.raw)
			}
			for _, c := range r.list("recovery_codes") {
				fresh = append(fresh, c.(string))
			}
			if len(fresh) != twofactor.RecoveryCodeN || slices.Contains(fresh, recovery[3]) {
				t.Fatalf("new recovery codes %v", fresh)
			}
			old := e.signIn("ann").str("mfa_token")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": old, "client_id": spaClient, "strategy": "backup_code", "code": recovery[4]}),
				http.StatusUnprocessableEntity, "invalid_code")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": old, "client_id": spaClient, "strategy": "backup_code", "code": fresh[0]}),
				http.StatusOK, "")
		})

		t.Run("regenerating recovery codes needs a current code", func(t *testing.T) {
			want(t, e.do(req{path: api.PathRecoveryCodes, bearer: at, body: map[string]any{}}), http.StatusBadRequest, "invalid_request")
			want(t, e.do(req{path: api.PathRecoveryCodes, bearer: at, body: map[string]any{"code": "000000"}}), http.StatusUnprocessableEntity, "invalid_code")
			e.clock.Advance(30 * time.Second)
			r := e.do(req{path: api.PathRecoveryCodes, bearer: at, body: map[string]any{"code": e.totp(secret)}})
			want(t, r, http.StatusOK, "")
			if len(r.list("recovery_codes")) != twofactor.RecoveryCodeN {
				t.Fatalf("got %s", r.raw)
			}
		})

		t.Run("deleting needs a current code", func(t *testing.T) {
			e.clock.Advance(30 * time.Second)
			want(t, e.do(req{method: http.MethodDelete, path: "/auth/mfa/sms", bearer: at, body: map[string]any{"code": e.totp(secret)}}),
				http.StatusNotFound, "not_found")
			want(t, e.do(req{method: http.MethodDelete, path: "/auth/mfa/totp", bearer: at, body: map[string]any{"code": "000000"}}),
				http.StatusUnprocessableEntity, "invalid_code")
			r := e.do(req{method: http.MethodDelete, path: "/auth/mfa/totp?code=" + e.totp(secret), bearer: at})
			want(t, r, http.StatusNoContent, "")
			if st, _ := e.tf.Status(context.Background(), "ann"); st.Enabled {
				t.Fatal("still enabled")
			}
			if r := e.signIn("ann"); r.str("status") != api.StatusComplete {
				t.Errorf("sign-in after delete: %s", r.raw)
			}
		})

		t.Run("changes need a password sign-in within 10 minutes", func(t *testing.T) {
			e.clock.Advance(api.FreshLogin + time.Minute)
			want(t, e.do(req{path: api.PathTOTP, bearer: at}), http.StatusForbidden, "reauthentication_required")
			want(t, e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: at}), http.StatusOK, "")
		})
	})
}

func TestCodeMethodsNeedAVerifiedDestinationAndAWebhook(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "una", Email: "una@example.com", PhoneNumber: alicePhone})
		at := e.accessToken("una")
		want(t, e.do(req{path: api.PathSMS, bearer: at}), http.StatusUnprocessableEntity, "destination_not_verified")
		want(t, e.do(req{path: api.PathEmail, bearer: at}), http.StatusUnprocessableEntity, "destination_not_verified")

		e.user(resource.User{ID: "vic", Email: "vic@example.com", EmailVerified: true})
		vic := e.accessToken("vic")
		e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.Webhook = nil })
		want(t, e.do(req{path: api.PathEmail, bearer: vic}), http.StatusConflict, "delivery_not_configured")
		e.authConfig(nil)
		r := e.do(req{path: api.PathEmail, bearer: vic})
		want(t, r, http.StatusOK, "")
		if r.str("destination") != twofactor.MaskDestination("vic@example.com") || len(r.list("recovery_codes")) != 10 {
			t.Fatalf("got %s", r.raw)
		}

		t.Run("an e-mail factor is deleted with a code from the challenge", func(t *testing.T) {
			want(t, e.do(req{method: http.MethodDelete, path: "/auth/mfa/email", bearer: vic, body: map[string]any{"code": "123456"}}),
				http.StatusUnprocessableEntity, "invalid_code")
			c := e.do(req{path: api.PathChallenge, bearer: vic})
			want(t, c, http.StatusAccepted, "")
			code := e.gw.last(t, "vic@example.com")
			if strings.Contains(c.raw, code) {
				t.Fatal("the challenge answer contains the code")
			}
			t.Run("a challenge code does not sign anyone in", func(t *testing.T) {
				tok := e.signIn("vic").str("mfa_token")
				want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "email_code", "code": code}),
					http.StatusUnprocessableEntity, "invalid_code")
			})
			want(t, e.do(req{method: http.MethodDelete, path: "/auth/mfa/email", bearer: vic, body: map[string]any{"code": code}}),
				http.StatusNoContent, "")
		})
	})
}

func TestBindable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "owner", Email: "owner@example.com", PhoneNumber: alicePhone, PhoneVerified: true})
		e.user(resource.User{ID: "typo", PhoneNumber: bobPhone})
		e.user(resource.User{ID: "typo-too", PhoneNumber: bobPhone})
		e.user(resource.User{ID: "owner-typo", PhoneNumber: alicePhone})
		// Numbers several accounts verified (the admin API allows it).
		e.user(resource.User{ID: "twin-1", PhoneNumber: "+14155557001", PhoneVerified: true})
		e.user(resource.User{ID: "twin-2", PhoneNumber: "+14155557001", PhoneVerified: true})
		e.user(resource.User{ID: "co-holder", PhoneNumber: "+14155557002", PhoneVerified: true})
		e.user(resource.User{ID: "me", Email: "me@example.com", PhoneNumber: "+14155557002", PhoneVerified: true})
		e.user(resource.User{ID: "me-too", PhoneNumber: "+14155557003", PhoneVerified: true})
		at := e.accessToken("me")
		cases := []struct {
			name, query string
			bindable    bool
		}{
			{"a phone another user verified is taken, whoever else typed it", "phone=%2B14155554567", false},
			{"a phone other users only typed is free", "phone=%2B14155550000", true},
			{"a phone two other users verified is taken", "phone=%2B14155557001", false},
			{"a phone one verified alongside another user is taken", "phone=%2B14155557002", false},
			{"an unused phone is free", "phone=%2B14155559999", true},
			{"another user's e-mail is taken", "email=Owner@Example.com", false},
			{"one's own e-mail is bindable", "email=me@example.com", true},
			{"an unused e-mail is free", "email=new@example.com", true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(req{method: http.MethodGet, path: api.PathBindable + "?" + tc.query, bearer: at})
				want(t, r, http.StatusOK, "")
				if r.body["bindable"] != tc.bindable {
					t.Fatalf("got %s, want bindable %v", r.raw, tc.bindable)
				}
			})
		}
		t.Run("one's own verified phone is bindable", func(t *testing.T) {
			r := e.do(req{method: http.MethodGet, path: api.PathBindable + "?phone=%2B14155557003", bearer: e.accessToken("me-too")})
			want(t, r, http.StatusOK, "")
			if r.body["bindable"] != true {
				t.Fatalf("got %s, want bindable", r.raw)
			}
		})
		for _, q := range []string{"", "phone=12345", "email=nope", "phone=%2B14155554567&email=a@example.com"} {
			want(t, e.do(req{method: http.MethodGet, path: api.PathBindable + "?" + q, bearer: at}), http.StatusBadRequest, "invalid_request")
		}
		t.Run("look-ups are limited per user", func(t *testing.T) {
			var last resp
			for range api.BindableLimit + 1 {
				last = e.do(req{method: http.MethodGet, path: api.PathBindable + "?email=x@example.com", bearer: at})
			}
			want(t, last, http.StatusTooManyRequests, "too_many_requests")
		})
	})
}

// A deployment's own factor through the same endpoints.
type faceFactor struct{}

func (faceFactor) Strategy() string { return "face" }

func (f faceFactor) Offers(_ context.Context, s *api.SignIn) ([]api.Offer, error) {
	if s.User.ID != "fay" {
		return nil, nil
	}
	return []api.Offer{{Strategy: "face"}}, nil
}

func (faceFactor) Prepare(context.Context, *api.SignIn, string) (api.Prepared, error) {
	return api.Prepared{Strategy: "face"}, nil
}

func (f faceFactor) Attempt(ctx context.Context, s *api.SignIn, code string) (api.Proof, error) {
	if code != "vendor-says-yes:"+s.User.ID {
		return api.Proof{}, api.ErrInvalidCode
	}
	return api.Proof{AMR: []string{"face"}}, nil
}

func TestADeploymentsOwnFactor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.api.SignIn.Factors = []api.Factor{faceFactor{}}
		e.user(resource.User{ID: "fay", Email: "fay@example.com"})
		r := e.signIn("fay")
		if r.str("status") != api.StatusNeedsSecondFactor || !slices.Equal(strategies(r), []string{"face"}) {
			t.Fatalf("got %s", r.raw)
		}
		tok := r.str("mfa_token")
		want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "face"}), http.StatusOK, "")
		want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "face", "code": "nope"}),
			http.StatusUnprocessableEntity, "invalid_code")
		done := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "face", "code": "vendor-says-yes:fay"})
		want(t, done, http.StatusOK, "")
		if amr := e.amrOf(done.str("access_token")); !slices.Equal(amr, []string{"pwd", "face", "mfa"}) {
			t.Errorf("amr %v", amr)
		}
	})
}
