package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

func TestAdminEquivalents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		basic := [2]string{adminUser, adminPass}
		e.totpUser("ada")
		e.user(resource.User{ID: "ben", Email: "ben@example.com"})

		t.Run("they need admin authentication", func(t *testing.T) {
			for _, q := range []req{
				{method: http.MethodGet, path: "/User/ada/$authenticators"},
				{method: http.MethodDelete, path: "/User/ada/$authenticators/totp"},
				{path: "/User/ada/$verification-codes", body: map[string]any{"channel": "email"}},
				{path: "/User/ada/$verify-destination", body: map[string]any{"channel": "email", "code": "123456"}},
			} {
				if r := e.do(q); r.status != http.StatusUnauthorized {
					t.Errorf("%s %s: %d", q.method, q.path, r.status)
				}
			}
		})

		t.Run("the admin API's own routes still answer beside them", func(t *testing.T) {
			r := e.do(req{method: http.MethodGet, path: "/User/ada", basic: basic})
			want(t, r, http.StatusOK, "")
			if r.str("id") != "ada" {
				t.Fatalf("got %s", r.raw)
			}
		})

		t.Run("an admin lists a user's authenticators", func(t *testing.T) {
			r := e.do(req{method: http.MethodGet, path: "/User/ada/$authenticators", basic: basic})
			want(t, r, http.StatusOK, "")
			if l := r.list("authenticators"); len(l) != 1 || l[0].(map[string]any)["id"] != "totp" {
				t.Fatalf("got %s", r.raw)
			}
			nf := e.do(req{method: http.MethodGet, path: "/User/nobody/$authenticators", basic: basic})
			if nf.status != http.StatusNotFound || nf.str("resourceType") != "OperationOutcome" {
				t.Fatalf("unknown user: %d %s", nf.status, nf.raw)
			}
		})

		t.Run("an admin resets a factor without a code", func(t *testing.T) {
			want(t, e.do(req{method: http.MethodDelete, path: "/User/ada/$authenticators/sms", basic: basic}), http.StatusNotFound, "")
			want(t, e.do(req{method: http.MethodDelete, path: "/User/ada/$authenticators/totp", basic: basic}), http.StatusNoContent, "")
			if r := e.signIn("ada"); r.str("status") != api.StatusComplete {
				t.Fatalf("sign-in after reset: %s", r.raw)
			}
			evs, _, err := e.st.ListAudit(ctx, store.AuditFilter{UserID: "ada", Type: audit.TwoFactorReset}, store.Page{Count: 5, Page: 1})
			if err != nil || len(evs) != 1 {
				t.Fatalf("reset events %v, %v", evs, err)
			}
		})

		t.Run("an admin sends a verification code and enters what the user received", func(t *testing.T) {
			want(t, e.do(req{path: "/User/ben/$verification-codes", basic: basic, body: map[string]any{"channel": "sms", "destination": alicePhone}}),
				http.StatusAccepted, "")
			code := e.gw.last(t, alicePhone)
			bad := e.do(req{path: "/User/ben/$verify-destination", basic: basic, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": "12345"}})
			if bad.status != http.StatusUnprocessableEntity || bad.str("resourceType") != "OperationOutcome" {
				t.Fatalf("wrong code: %d %s", bad.status, bad.raw)
			}
			r := e.do(req{path: "/User/ben/$verify-destination", basic: basic, body: map[string]any{"channel": "sms", "destination": alicePhone, "code": code}})
			want(t, r, http.StatusOK, "")
			if r.str("phoneNumber") != alicePhone || r.body["phoneVerified"] != true {
				t.Fatalf("got %s", r.raw)
			}
			evs, _, err := e.st.ListAudit(ctx, store.AuditFilter{UserID: "ben", Type: api.EventDestinationVerified}, store.Page{Count: 5, Page: 1})
			if err != nil || len(evs) != 1 {
				t.Fatalf("events %v, %v", evs, err)
			}
		})

		t.Run("an admin sends a code for a user not created yet, and the PUT that creates the user spends it", func(t *testing.T) {
			const carlPhone = "+14155557777"
			nodest := e.do(req{path: "/User/carl/$verification-codes", basic: basic, body: map[string]any{"channel": "sms"}})
			if nodest.status != http.StatusBadRequest || nodest.str("resourceType") != "OperationOutcome" {
				t.Fatalf("without a destination: %d %s", nodest.status, nodest.raw)
			}
			want(t, e.do(req{path: "/User/carl/$verification-codes", basic: basic, body: map[string]any{"channel": "sms", "destination": carlPhone}}),
				http.StatusAccepted, "")
			if _, err := e.st.GetUser(ctx, "carl"); err == nil {
				t.Fatal("sending a code created the user")
			}
			code := e.gw.last(t, carlPhone)
			put := e.do(req{method: http.MethodPut, path: "/User/carl", basic: basic,
				body: map[string]any{"password": "carl-password", "phoneNumber": carlPhone, "phoneVerificationCode": code}})
			want(t, put, http.StatusCreated, "")
			if put.str("phoneNumber") != carlPhone || put.body["phoneVerified"] != true || put.body["phoneVerificationCode"] != nil {
				t.Fatalf("created %s", put.raw)
			}
			again := e.do(req{method: http.MethodPut, path: "/User/carl", basic: basic,
				body: map[string]any{"phoneNumber": carlPhone, "phoneVerificationCode": code}})
			if again.status != http.StatusUnprocessableEntity {
				t.Fatalf("the spent code again: %d %s", again.status, again.raw)
			}
		})

		t.Run("the code the user asked for through the JSON API verifies the number an admin writes", func(t *testing.T) {
			e.user(resource.User{ID: "dora"})
			tok := e.accessToken("dora")
			want(t, e.do(req{path: api.PathVerificationCodes, bearer: tok, body: map[string]any{"channel": "sms", "destination": bobPhone}}),
				http.StatusAccepted, "")
			put := e.do(req{method: http.MethodPut, path: "/User/dora", basic: basic,
				body: map[string]any{"phoneNumber": bobPhone, "phoneVerificationCode": e.gw.last(t, bobPhone)}})
			want(t, put, http.StatusOK, "")
			if put.body["phoneVerified"] != true {
				t.Fatalf("got %s", put.raw)
			}
		})
	})
}
