package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Freshcom's first sample: enable two-factor authentication by verifying a
// phone number (verification code → verified phone → tfa_sms).
func TestFreshcomEnableTwoFactorByPhoneVerification(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user(resource.User{ID: "fred", Email: "fred@example.com"})
		at := e.accessToken("fred")

		want(t, e.do(req{path: api.PathSMS, bearer: at}), http.StatusUnprocessableEntity, "destination_not_verified")

		send := e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "sms", "destination": alicePhone}})
		want(t, send, http.StatusAccepted, "")
		code := e.gw.last(t, alicePhone)
		if strings.Contains(send.raw, code) || strings.Contains(send.raw, alicePhone) {
			t.Fatalf("the answer shows the code or the full number: %s", send.raw)
		}

		unchanged := func(t *testing.T) {
			t.Helper()
			u, err := e.st.GetUser(ctx, "fred")
			if err != nil {
				t.Fatal(err)
			}
			if u.PhoneNumber != "" || u.PhoneVerified {
				t.Fatalf("the user changed: %+v", u)
			}
		}

		t.Run("a wrong code is 422 and changes nothing", func(t *testing.T) {
			wrong := "000000"
			if code == wrong {
				wrong = "111111"
			}
			want(t, e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": wrong}}),
				http.StatusUnprocessableEntity, "invalid_code")
			unchanged(t)
		})

		t.Run("the code is bound to its destination", func(t *testing.T) {
			want(t, e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "sms", "destination": bobPhone, "code": code}}),
				http.StatusUnprocessableEntity, "invalid_code")
			unchanged(t)
		})

		t.Run("the code is bound to its user", func(t *testing.T) {
			e.user(resource.User{ID: "mallory", Email: "mallory@example.com"})
			m := e.accessToken("mallory")
			want(t, e.do(req{path: api.PathVerifyDestination, bearer: m, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": code}}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("the right code verifies the phone", func(t *testing.T) {
			r := e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": code}})
			want(t, r, http.StatusOK, "")
			if r.str("phoneNumber") != alicePhone || r.body["phoneVerified"] != true || r.str("password") != "" {
				t.Fatalf("got %s", r.raw)
			}
			rec, err := e.st.GetUser(ctx, "fred")
			if err != nil {
				t.Fatal(err)
			}
			var doc resource.User
			if err := json.Unmarshal(rec.Doc, &doc); err != nil {
				t.Fatal(err)
			}
			if !rec.PhoneVerified || doc.PhoneNumber != alicePhone || !doc.PhoneVerified {
				t.Fatalf("record %+v, document %+v", rec, doc)
			}
			if rec.PasswordHash == "" {
				t.Fatal("the password was lost")
			}
		})

		t.Run("a reused code is 422", func(t *testing.T) {
			want(t, e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": code}}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("SMS codes can now be turned on", func(t *testing.T) {
			r := e.do(req{path: api.PathSMS, bearer: at})
			want(t, r, http.StatusOK, "")
			if r.str("method") != "sms" || len(r.list("recovery_codes")) != twofactor.RecoveryCodeN {
				t.Fatalf("got %s", r.raw)
			}
			s := e.signIn("fred")
			if s.str("status") != api.StatusNeedsSecondFactor || strategies(s)[0] != "phone_code" {
				t.Fatalf("sign-in: %s", s.raw)
			}
		})
	})
}

func TestVerificationCodesExpireAndAreLimited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "gus", Email: "gus@example.com"})
		at := e.accessToken("gus")

		t.Run("an expired code is 422", func(t *testing.T) {
			want(t, e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "email", "destination": "gus.new@example.com"}}),
				http.StatusAccepted, "")
			code := e.gw.last(t, "gus.new@example.com")
			e.clock.Advance(twofactor.CodeTTL + time.Second)
			want(t, e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "email", "destination": "gus.new@example.com", "code": code}}),
				http.StatusUnprocessableEntity, "invalid_code")
		})

		t.Run("the e-mail address defaults to the user's own", func(t *testing.T) {
			at := e.accessToken("gus") // the clock moved past the first token's freshness; any token works here
			want(t, e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "email"}}), http.StatusAccepted, "")
			code := e.gw.last(t, "gus@example.com")
			r := e.do(req{path: api.PathVerifyDestination, bearer: at, body: map[string]any{"channel": "email", "code": code}})
			want(t, r, http.StatusOK, "")
			if r.body["emailVerified"] != true {
				t.Fatalf("got %s", r.raw)
			}
		})

		t.Run("a sixth code within the hour is 429", func(t *testing.T) {
			var last resp
			for range twofactor.SendLimit + 1 {
				last = e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "sms", "destination": bobPhone}})
			}
			want(t, last, http.StatusTooManyRequests, "too_many_requests")
			if last.header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})

		t.Run("bad input is 400", func(t *testing.T) {
			for _, body := range []map[string]any{
				{}, {"channel": "fax", "destination": "x"}, {"channel": "sms"}, {"channel": "sms", "destination": "0123"},
				{"channel": "email", "destination": "not-an-address"},
			} {
				want(t, e.do(req{path: api.PathVerificationCodes, bearer: at, body: body}), http.StatusBadRequest, "invalid_request")
			}
		})

		t.Run("a destination another account holds is 409", func(t *testing.T) {
			e.user(resource.User{ID: "holder", Email: "holder@example.com", PhoneNumber: alicePhone, PhoneVerified: true})
			want(t, e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "sms", "destination": alicePhone}}),
				http.StatusConflict, "destination_taken")
			want(t, e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "email", "destination": "holder@example.com"}}),
				http.StatusConflict, "destination_taken")
		})
	})
}
