package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Freshcom's second sample: register a user with two-factor
// authentication, the phone verified by the code in the same request.
func TestFreshcomRegisterWithTwoFactor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.DefaultMethod = "sms" })

		send := e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "sms", "destination": alicePhone})
		want(t, send, http.StatusAccepted, "")
		code := e.gw.last(t, alicePhone)
		if strings.Contains(send.raw, code) {
			t.Fatal("the answer contains the code")
		}
		body := map[string]any{"client_id": spaClient, "username": "roy", "password": "test1234", "phone_number": alicePhone,
			"verification_code": code, "given_name": "Roy"}

		t.Run("a wrong code creates nobody", func(t *testing.T) {
			b := clone(body)
			b["verification_code"] = "000000"
			if code == "000000" {
				b["verification_code"] = "111111"
			}
			want(t, e.post(api.PathSignUp, b), http.StatusUnprocessableEntity, "invalid_code")
			if _, err := e.st.GetUser(ctx, "roy"); err == nil {
				t.Fatal("a user was created")
			}
		})

		t.Run("an e-mail sign-up is refused where new accounts get SMS codes", func(t *testing.T) {
			b := clone(body)
			delete(b, "phone_number")
			b["email"] = "roy@example.com"
			want(t, e.post(api.PathSignUp, b), http.StatusBadRequest, "invalid_request")
		})

		t.Run("the right code creates the user with the phone verified and SMS codes on", func(t *testing.T) {
			r := e.post(api.PathSignUp, body)
			want(t, r, http.StatusCreated, "")
			u, _ := r.body["user"].(map[string]any)
			if u["id"] != "roy" || u["phoneNumber"] != alicePhone || u["phoneVerified"] != true || u["password"] != nil {
				t.Fatalf("user %v", u)
			}
			tf, _ := u["twoFactor"].(map[string]any)
			if tf["enabled"] != true || tf["method"] != "sms" {
				t.Fatalf("twoFactor %v", tf)
			}
			if len(r.list("recovery_codes")) != twofactor.RecoveryCodeN || r.str("access_token") != "" {
				t.Fatalf("got %s", r.raw)
			}
			rec, err := e.st.GetUser(ctx, "roy")
			if err != nil || rec.PasswordHash == "" || !strings.HasPrefix(rec.PasswordHash, "$argon2id$") {
				t.Fatalf("stored user %+v, %v", rec, err)
			}
		})

		t.Run("the sign-up code is spent", func(t *testing.T) {
			b := clone(body)
			b["username"] = "roy2"
			want(t, e.post(api.PathSignUp, b), http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("the new user signs in with password and an SMS code", func(t *testing.T) {
			r := e.post(api.PathSignIn, map[string]any{"username": "roy", "password": "test1234", "client_id": spaClient})
			if r.str("status") != api.StatusNeedsSecondFactor || strategies(r)[0] != "phone_code" {
				t.Fatalf("got %s", r.raw)
			}
			tok := r.str("mfa_token")
			want(t, e.post(api.PathSignInPrepare, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code"}), http.StatusOK, "")
			want(t, e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "phone_code", "code": e.gw.last(t, alicePhone)}),
				http.StatusOK, "")
		})

		t.Run("a taken username is told only after a valid code", func(t *testing.T) {
			b := clone(body)
			b["phone_number"], b["verification_code"] = bobPhone, "000000"
			want(t, e.post(api.PathSignUp, b), http.StatusUnprocessableEntity, "invalid_code")
			want(t, e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "sms", "destination": bobPhone}), http.StatusAccepted, "")
			b["verification_code"] = e.gw.last(t, bobPhone)
			want(t, e.post(api.PathSignUp, b), http.StatusConflict, "username_taken")
			want(t, e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "sms", "destination": bobPhone}), http.StatusAccepted, "")
			b["username"], b["verification_code"] = "rita", e.gw.last(t, bobPhone)
			r := e.post(api.PathSignUp, b)
			want(t, r, http.StatusCreated, "")
		})

		t.Run("a phone another account verified is 409", func(t *testing.T) {
			want(t, e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "sms", "destination": alicePhone}), http.StatusAccepted, "")
			b := clone(body)
			b["username"], b["verification_code"] = "copycat", e.gw.last(t, alicePhone)
			want(t, e.post(api.PathSignUp, b), http.StatusConflict, "destination_taken")
		})

		t.Run("codes to one destination are limited", func(t *testing.T) {
			var last resp
			for range twofactor.SendLimit + 1 {
				last = e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "sms", "destination": "+14155551111"})
			}
			want(t, last, http.StatusTooManyRequests, "too_many_requests")
		})

		t.Run("codes asked from one address are limited", func(t *testing.T) {
			var last resp
			for i := range api.SignUpSendsPerAddress + 1 {
				last = e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "email", "destination": fmt.Sprintf("n%d@example.com", i)})
			}
			want(t, last, http.StatusTooManyRequests, "too_many_requests")
		})
	})
}

func TestSignUpAndSignIn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		signUp := func(t *testing.T, username, email string) resp {
			t.Helper()
			want(t, e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "email", "destination": email}), http.StatusAccepted, "")
			return e.post(api.PathSignUp, map[string]any{"client_id": spaClient, "username": username, "password": "long enough",
				"email": email, "verification_code": e.gw.last(t, email), "sign_in": true})
		}

		t.Run("without a default method the new user is signed in with a password only", func(t *testing.T) {
			r := signUp(t, "nia", "nia@example.com")
			want(t, r, http.StatusCreated, "")
			if r.str("status") != api.StatusComplete || r.str("access_token") == "" || r.body["recovery_codes"] != nil {
				t.Fatalf("got %s", r.raw)
			}
			if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd"}) {
				t.Errorf("amr %v", amr)
			}
		})

		t.Run("a taken e-mail address is 409", func(t *testing.T) {
			want(t, signUp(t, "nia2", "nia@example.com"), http.StatusConflict, "destination_taken")
		})

		t.Run("with e-mail codes by default the sign-up signs in with mfa", func(t *testing.T) {
			e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.DefaultMethod = "email" })
			r := signUp(t, "ola", "ola@example.com")
			want(t, r, http.StatusCreated, "")
			if r.str("status") != api.StatusComplete || len(r.list("recovery_codes")) != 10 {
				t.Fatalf("got %s", r.raw)
			}
			if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr %v", amr)
			}
		})

		t.Run("with TOTP by default the enrolment happens at the first sign-in", func(t *testing.T) {
			e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.DefaultMethod = "totp" })
			r := signUp(t, "pia", "pia@example.com")
			want(t, r, http.StatusCreated, "")
			if r.str("status") != api.StatusNeedsEnrollment || r.str("mfa_token") == "" || r.str("access_token") != "" {
				t.Fatalf("got %s", r.raw)
			}
			later := e.post(api.PathSignIn, map[string]any{"username": "pia", "password": "long enough", "client_id": spaClient})
			if later.str("status") != api.StatusNeedsEnrollment {
				t.Fatalf("a later sign-in: %s", later.raw)
			}
			list := e.do(req{method: http.MethodGet, path: "/User/pia/$authenticators", basic: [2]string{adminUser, adminPass}})
			want(t, list, http.StatusOK, "")
			if list.str("enrollmentDue") != "totp" {
				t.Errorf("authenticators %s", list.raw)
			}
			tok := r.str("mfa_token")
			en := e.post(api.PathSignInEnroll, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"})
			want(t, en, http.StatusOK, "")
			assoc, _ := en.body["totp"].(map[string]any)
			secret, _ := assoc["secret"].(string)
			done := e.post(api.PathSignInEnrollDone, map[string]any{"mfa_token": tok, "client_id": spaClient,
				"pending_token": assoc["pending_token"], "code": e.totp(secret)})
			want(t, done, http.StatusOK, "")
			if done.str("access_token") == "" || len(done.list("recovery_codes")) != 10 {
				t.Fatalf("got %s", done.raw)
			}
		})

		t.Run("sign-up is refused where the AuthConfig does not enable it", func(t *testing.T) {
			e.authConfig(func(ac *resource.AuthConfig) { ac.SignUp = nil })
			want(t, e.post(api.PathSignUpCode, map[string]any{"client_id": spaClient, "channel": "email", "destination": "x@example.com"}),
				http.StatusForbidden, "sign_up_disabled")
			want(t, e.post(api.PathSignUp, map[string]any{"client_id": spaClient, "username": "x", "password": "long enough",
				"email": "x@example.com", "verification_code": "123456"}), http.StatusForbidden, "sign_up_disabled")
		})

		t.Run("bad fields are 400", func(t *testing.T) {
			e.authConfig(nil)
			base := map[string]any{"client_id": spaClient, "username": "valid", "password": "long enough", "email": "v@example.com", "verification_code": "123456"}
			for name, edit := range map[string]func(map[string]any){
				"no username":       func(b map[string]any) { delete(b, "username") },
				"a bad username":    func(b map[string]any) { b["username"] = "has space" },
				"a short password":  func(b map[string]any) { b["password"] = "short" },
				"no code":           func(b map[string]any) { delete(b, "verification_code") },
				"no destination":    func(b map[string]any) { delete(b, "email") },
				"both destinations": func(b map[string]any) { b["phone_number"] = alicePhone },
				"a bad address":     func(b map[string]any) { b["email"] = "nope" },
			} {
				t.Run(name, func(t *testing.T) {
					b := clone(base)
					edit(b)
					want(t, e.post(api.PathSignUp, b), http.StatusBadRequest, "invalid_request")
				})
			}
		})
	})
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
