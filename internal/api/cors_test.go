package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
)

func TestCORS(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "cora", Email: "cora@example.com"})
		signIn := map[string]any{"username": "cora", "password": userPassword, "client_id": spaClient}

		preflight := func(t *testing.T, path, origin string) resp {
			t.Helper()
			r, err := http.NewRequest(http.MethodOptions, e.srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Origin", origin)
			r.Header.Set("Access-Control-Request-Method", "POST")
			r.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
			res, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return resp{status: res.StatusCode, header: res.Header}
		}

		t.Run("a preflight from a listed origin is allowed", func(t *testing.T) {
			for _, path := range []string{api.PathSignIn, api.PathSignInAttempt, api.PathTOTPConfirm, "/auth/mfa/totp", api.PathSignUp, api.PathVerificationCodes} {
				r := preflight(t, path, appOrigin)
				if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != appOrigin {
					t.Fatalf("%s: status %d, allow-origin %q", path, r.status, r.header.Get("Access-Control-Allow-Origin"))
				}
				if !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
					t.Errorf("allow-headers %q", r.header.Get("Access-Control-Allow-Headers"))
				}
			}
		})

		t.Run("a preflight from an unknown origin gets no allowance", func(t *testing.T) {
			r := preflight(t, api.PathSignIn, "https://evil.example")
			if r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("allow-origin %q", r.header.Get("Access-Control-Allow-Origin"))
			}
		})

		t.Run("a preflight naming a client checks that client's origins", func(t *testing.T) {
			if r := preflight(t, api.PathSignIn+"?client_id="+spaClient, otherOrigin); r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("allow-origin %q for another client's origin", r.header.Get("Access-Control-Allow-Origin"))
			}
		})

		t.Run("the answer to a listed origin carries Access-Control-Allow-Origin", func(t *testing.T) {
			r := e.do(req{path: api.PathSignIn, body: signIn, origin: appOrigin})
			want(t, r, http.StatusOK, "")
			if r.header.Get("Access-Control-Allow-Origin") != appOrigin || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
				t.Fatalf("headers %v", r.header)
			}
			if r.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials mode is not needed")
			}
		})

		t.Run("an error for a listed origin is readable too", func(t *testing.T) {
			bad := clone(signIn)
			bad["password"] = "wrong"
			r := e.do(req{path: api.PathSignIn, body: bad, origin: appOrigin})
			want(t, r, http.StatusUnauthorized, "invalid_credentials")
			if r.header.Get("Access-Control-Allow-Origin") != appOrigin {
				t.Fatal("no allow-origin on the error")
			}
		})

		t.Run("an origin the client does not list is refused and not allowed", func(t *testing.T) {
			r := e.do(req{path: api.PathSignIn, body: signIn, origin: otherOrigin})
			want(t, r, http.StatusForbidden, "origin_not_allowed")
			if r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("allow-origin %q", r.header.Get("Access-Control-Allow-Origin"))
			}
		})

		t.Run("Bearer calls use the token's client", func(t *testing.T) {
			at := e.accessToken("cora")
			r := e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: at, origin: appOrigin})
			want(t, r, http.StatusOK, "")
			if r.header.Get("Access-Control-Allow-Origin") != appOrigin {
				t.Fatal("no allow-origin")
			}
			want(t, e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: at, origin: otherOrigin}), http.StatusForbidden, "origin_not_allowed")
		})
	})
}

// Garbage never gets a 500 (env.do fails the test on any 5xx).
func TestGarbageInputIsRefusedPlainly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.totpUser("gabe")
		tok := e.signIn("gabe").str("mfa_token")
		at := func() string {
			e.user(resource.User{ID: "plain", Email: "plain@example.com"})
			return e.accessToken("plain")
		}()
		bodies := []struct {
			name  string
			body  any
			ctype string
		}{
			{"invalid JSON", "{", ""},
			{"a JSON array", "[1,2]", ""},
			{"a JSON string", `"x"`, ""},
			{"JSON null", "null", ""},
			{"trailing data", `{"a":"b"} {"c":"d"}`, ""},
			{"a number where a string belongs", `{"username":1,"password":2,"client_id":3}`, ""},
			{"an object where a string belongs", `{"code":{"x":1}}`, ""},
			{"an unknown media type", "<xml/>", "application/xml"},
			{"a malformed media type", "{}", "application/json; ===="},
			{"a repeated form field", "code=1&code=2", "application/x-www-form-urlencoded"},
			{"invalid UTF-8", []byte("{\"code\":\"\xff\xfe\"}"), ""},
			{"a megabyte", `{"code":"` + strings.Repeat("1", 1<<20) + `"}`, ""},
		}
		paths := []struct {
			path   string
			bearer string
		}{
			{api.PathSignIn, ""}, {api.PathSignInPrepare, ""}, {api.PathSignInAttempt, ""}, {api.PathSignInEnroll, ""},
			{api.PathSignInEnrollDone, ""}, {api.PathRecoveryVerify, ""}, {api.PathSignUp, ""}, {api.PathSignUpCode, ""},
			{api.PathTOTPConfirm, at}, {api.PathRecoveryCodes, at}, {api.PathVerificationCodes, at}, {api.PathVerifyDestination, at},
		}
		for _, b := range bodies {
			t.Run(b.name, func(t *testing.T) {
				for _, p := range paths {
					r := e.do(req{path: p.path, body: b.body, ctype: b.ctype, bearer: p.bearer})
					if r.status < 400 || r.status >= 500 || r.str("error") == "" {
						t.Errorf("%s: %d %s", p.path, r.status, r.raw)
					}
				}
			})
		}
		t.Run("odd codes are invalid_code", func(t *testing.T) {
			for _, code := range []string{"1", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12\x0034", strings.Repeat("9", 5000)} {
				r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp", "code": code})
				want(t, r, http.StatusUnprocessableEntity, "invalid_code")
			}
		})
		t.Run("a missing field is named", func(t *testing.T) {
			r := e.post(api.PathSignInAttempt, map[string]any{"mfa_token": tok, "client_id": spaClient, "strategy": "totp"})
			want(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(r.str("error_description"), "code") {
				t.Errorf("description %q", r.str("error_description"))
			}
		})
	})
}
