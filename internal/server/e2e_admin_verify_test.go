package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// adminJSON sends a JSON body to the admin API with the bootstrap admin's
// Basic credentials.
func adminJSON(t *testing.T, app *testApp, method, path string, body map[string]any) apiResp {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, app.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", testAdminPassword)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return doJSON(t, req)
}

// outcomeNames fails unless r is a 422 OperationOutcome naming field.
func outcomeNames(t *testing.T, r apiResp, field string) {
	t.Helper()
	if r.status != http.StatusUnprocessableEntity || r.str("resourceType") != "OperationOutcome" || !strings.Contains(r.raw, `"expression":["`+field+`"]`) {
		t.Fatalf("want a 422 naming %s, got %d %s", field, r.status, r.raw)
	}
}

// The Freshcom flows of the admin API over real HTTP: a customer created
// with the code sent to their phone, SMS codes turned on by the admin in
// the same request, a sign-in with those codes, and an e-mail address the
// user asked a code for, verified by the admin's PUT.
func TestAdminVerifiesDestinationsAndTurnsOnCodesEndToEnd(t *testing.T) {
	const (
		phone = "+14155550142"
		email = "roy.new@example.com"
	)
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			gw := gateway{newHookReceiver(t, false)}
			// The gateway listens on loopback: allow private webhook endpoints.
			app := startApp(t, be.Open(t), func(c *config.Config) { c.Webhook.AllowPrivate = true })
			putResource(t, app, "/AuthConfig/default", "twoFactor:\n  webhook:\n    endpoint: '"+gw.srv.URL+"/codes'\n    timeout: 2000\n")
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			var smsCode, emailCode string

			t.Run("an admin sends a code to the phone of a customer not created yet", func(t *testing.T) {
				n := gw.mark()
				r := adminJSON(t, app, http.MethodPost, "/User/roy/$verification-codes", map[string]any{"channel": "sms", "destination": phone})
				wantStatus(t, r, http.StatusAccepted, "")
				smsCode = gw.codeTo(t, n, phone)
			})
			t.Run("a create with a wrong code is refused naming phoneVerificationCode and creates nobody", func(t *testing.T) {
				wrong := "000000"
				if smsCode == wrong {
					wrong = "111111"
				}
				outcomeNames(t, adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"password": i5Password, "phoneNumber": phone, "phoneVerificationCode": wrong,
					"twoFactor": map[string]any{"enabled": true, "method": "sms"},
				}), "phoneVerificationCode")
				if r := adminJSON(t, app, http.MethodGet, "/User/roy", nil); r.status != http.StatusNotFound {
					t.Fatalf("GET after a refused create: %d %s", r.status, r.raw)
				}
			})
			t.Run("the create with the right code stores the phone verified and turns SMS codes on in one request", func(t *testing.T) {
				r := adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"password": i5Password, "phoneNumber": phone, "phoneVerificationCode": smsCode,
					"twoFactor": map[string]any{"enabled": true, "method": "sms"},
				})
				wantStatus(t, r, http.StatusCreated, "")
				tf, _ := r.body["twoFactor"].(map[string]any)
				if r.body["phoneVerified"] != true || tf["enabled"] != true || tf["method"] != "sms" {
					t.Fatalf("created %s", r.raw)
				}
				for _, body := range []string{r.raw, adminJSON(t, app, http.MethodGet, "/User/roy", nil).raw} {
					if strings.Contains(body, smsCode) || strings.Contains(body, "VerificationCode") {
						t.Fatalf("the code is shown: %s", body)
					}
				}
			})
			t.Run("the password grant then asks for the code texted to that phone", func(t *testing.T) {
				n := gw.mark()
				form := url.Values{"grant_type": {"password"}, "username": {"roy"}, "password": {i5Password}, "scope": {"openid"}}
				wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, form), http.StatusForbidden, "mfa_required")
				form.Set("otp", gw.codeTo(t, n, phone))
				r := tokenRequest(t, app, "mobile", i5Secret, form)
				wantTokens(t, r)
				if amr := idTokenAMR(t, app, r); !slices.Contains(amr, "mfa") {
					t.Fatalf("amr %v", amr)
				}
			})
			t.Run("the user asks for a code to a new e-mail address, and the admin's PUT verifies it and moves the codes there", func(t *testing.T) {
				n := gw.mark()
				form := url.Values{"grant_type": {"password"}, "username": {"roy"}, "password": {i5Password}}
				wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, form), http.StatusForbidden, "mfa_required")
				form.Set("otp", gw.codeTo(t, n, phone))
				tok := tokenRequest(t, app, "mobile", i5Secret, form)
				wantTokens(t, tok)

				n = gw.mark()
				wantStatus(t, callAPI(t, app, http.MethodPost, "/auth/verification-codes", tok.str("access_token"),
					map[string]any{"channel": "email", "destination": email}), http.StatusAccepted, "")
				emailCode = gw.codeTo(t, n, email)
				r := adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"phoneNumber": phone, "phoneVerified": true, "email": email, "emailVerificationCode": emailCode,
					"twoFactor": map[string]any{"enabled": true, "method": "email"},
				})
				wantStatus(t, r, http.StatusOK, "")
				tf, _ := r.body["twoFactor"].(map[string]any)
				if r.body["emailVerified"] != true || tf["method"] != "email" {
					t.Fatalf("updated %s", r.raw)
				}
			})
			t.Run("the same code again is refused naming emailVerificationCode", func(t *testing.T) {
				outcomeNames(t, adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"phoneNumber": phone, "phoneVerified": true, "email": email, "emailVerificationCode": emailCode,
					"name": map[string]any{"givenName": "Roy"},
				}), "emailVerificationCode")
				if r := adminJSON(t, app, http.MethodGet, "/User/roy", nil); r.body["name"] != nil {
					t.Fatalf("a refused write changed the user: %s", r.raw)
				}
			})
			t.Run("an admin cannot set up TOTP, and cannot turn on SMS codes to an unverified number", func(t *testing.T) {
				outcomeNames(t, adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"email": email, "emailVerified": true, "twoFactor": map[string]any{"enabled": true, "method": "totp"},
				}), "twoFactor.method")
				outcomeNames(t, adminJSON(t, app, http.MethodPut, "/User/roy", map[string]any{
					"email": email, "emailVerified": true, "phoneNumber": "+14155550199", "twoFactor": map[string]any{"enabled": true, "method": "sms"},
				}), "phoneNumber")
			})
			t.Run("the audit log has each step, and never a code", func(t *testing.T) {
				r := adminJSON(t, app, http.MethodGet, "/AuditEvent?user=roy&_count=200", nil)
				wantStatus(t, r, http.StatusOK, "")
				byType := map[string][]map[string]any{}
				for _, e := range r.list(t, "entry") {
					ev, _ := e["resource"].(map[string]any)
					typ, _ := ev["type"].(string)
					byType[typ] = append(byType[typ], ev)
				}
				if len(byType["user.destination_verified"]) != 2 {
					t.Fatalf("destination_verified events: %v", byType["user.destination_verified"])
				}
				var methods []string
				for _, ev := range byType["two_factor.enabled"] {
					d, _ := ev["detail"].(map[string]any)
					if d["by"] == "admin" {
						methods = append(methods, d["method"].(string))
					}
				}
				slices.Sort(methods)
				if !slices.Equal(methods, []string{"email", "sms"}) {
					t.Fatalf("admin two_factor.enabled events for %v", methods)
				}
				if len(byType["two_factor.failure"]) < 2 {
					t.Fatalf("the refused codes are not audited: %v", byType["two_factor.failure"])
				}
				for _, c := range []string{`"` + smsCode + `"`, `"` + emailCode + `"`} {
					if strings.Contains(r.raw, c) {
						t.Fatalf("the audit log shows a code %s", c)
					}
				}
			})
		})
	}
}
