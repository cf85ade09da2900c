package admin

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const hookedAuthConfig = "  webhook: {endpoint: 'https://sms-gateway.example.com/codes', timeout: 500}\n"

// factorOf is the user's stored second-factor record; ok false when none.
func (e *env) factorOf(id string) (store.TwoFactor, bool) {
	e.t.Helper()
	tf, err := e.st.GetTwoFactor(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.TwoFactor{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return tf, true
}

// lastWriteDetail is the detail of the newest admin.write event of a user.
func (e *env) lastWriteDetail(id string) map[string]string {
	e.t.Helper()
	evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{UserID: id, Type: audit.AdminWrite}, store.Page{Count: 1, Page: 1})
	if err != nil || len(evs) == 0 {
		e.t.Fatalf("no admin.write event for %s: %v", id, err)
	}
	return evs[0].Detail
}

func TestDefaultMethodForUsersTheAdminCreates(t *testing.T) {
	type want struct {
		enrolmentDue bool
		method       string // enabled method, "" for none
		destination  string
		outcome      string // twoFactorDefault in the audit event, "" for none
	}
	cases := []struct {
		name        string
		authConfigs map[string]string // id → YAML
		user        string            // YAML of the new user (id new-user)
		want        want
	}{
		{
			name:        "totp leaves an enrolment due at the first sign-in",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: totp\n"},
			user:        "email: new@example.com\npassword: pw-pw-pw-pw\n",
			want:        want{enrolmentDue: true, outcome: "totp:enrolment_due"},
		},
		{
			name:        "sms turns on codes to a verified phone when a webhook delivers them",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: sms\n" + hookedAuthConfig},
			user:        "phoneNumber: '+14155550123'\nphoneVerified: true\npassword: pw-pw-pw-pw\n",
			want:        want{method: "sms", destination: "+14155550123", outcome: "sms:enabled"},
		},
		{
			name:        "email turns on codes to a verified address when a webhook delivers them",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: email\n" + hookedAuthConfig},
			user:        "email: New@Example.com\nemailVerified: true\npassword: pw-pw-pw-pw\n",
			want:        want{method: "email", destination: "new@example.com", outcome: "email:enabled"},
		},
		{
			name:        "sms to an unverified phone records nothing",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: sms\n" + hookedAuthConfig},
			user:        "phoneNumber: '+14155550123'\npassword: pw-pw-pw-pw\n",
			want:        want{outcome: "sms:not_applied"},
		},
		{
			name:        "email without a webhook to deliver codes records nothing",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: email\n"},
			user:        "email: new@example.com\nemailVerified: true\npassword: pw-pw-pw-pw\n",
			want:        want{outcome: "email:not_applied"},
		},
		{
			name:        "the only AuthConfig applies when none is called default",
			authConfigs: map[string]string{"solo": "twoFactor:\n  defaultMethod: totp\n"},
			user:        "password: pw-pw-pw-pw\n",
			want:        want{enrolmentDue: true, outcome: "totp:enrolment_due"},
		},
		{
			name: "with several AuthConfigs and none called default, none applies",
			authConfigs: map[string]string{
				"one": "twoFactor:\n  defaultMethod: totp\n",
				"two": "twoFactor:\n  defaultMethod: totp\n",
			},
			user: "password: pw-pw-pw-pw\n",
		},
		{
			name:        "an AuthConfig without defaultMethod leaves the user without a factor",
			authConfigs: map[string]string{"default": "twoFactor:\n  issuerName: Acme\n" + hookedAuthConfig},
			user:        "phoneNumber: '+14155550123'\nphoneVerified: true\npassword: pw-pw-pw-pw\n",
		},
		{
			name:        "a create that sets twoFactor enabled false opts out",
			authConfigs: map[string]string{"default": "twoFactor:\n  defaultMethod: totp\n"},
			user:        "password: pw-pw-pw-pw\ntwoFactor: {enabled: false}\n",
		},
	}
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := newEnv(t, be.Open(t))
					for id, y := range tc.authConfigs {
						mustStatus(t, e.putYAML("/AuthConfig/"+id, y), http.StatusCreated)
					}
					mustStatus(t, e.putYAML("/User/new-user", tc.user), http.StatusCreated)
					tf, ok := e.factorOf("new-user")
					switch {
					case tc.want.enrolmentDue:
						if !ok || !resource.TOTPEnrolmentDue(tf) {
							t.Fatalf("want a TOTP enrolment due, got %+v (stored %v)", tf, ok)
						}
					case tc.want.method != "":
						if !ok || !tf.Enabled || tf.Method != tc.want.method || tf.Destination != tc.want.destination || len(tf.Secret) != 0 {
							t.Fatalf("want %s to %s enabled, got %+v (stored %v)", tc.want.method, tc.want.destination, tf, ok)
						}
					default:
						if ok {
							t.Fatalf("want no second factor, got %+v", tf)
						}
					}
					if got := e.lastWriteDetail("new-user")["twoFactorDefault"]; got != tc.want.outcome {
						t.Errorf("audit twoFactorDefault = %q, want %q", got, tc.want.outcome)
					}
					body := e.get("/User/new-user").json(t)
					status, _ := body["twoFactor"].(map[string]any)
					if enabled, _ := status["enabled"].(bool); enabled != (tc.want.method != "") {
						t.Errorf("GET /User twoFactor = %v", status)
					}
					if tc.want.method != "" {
						if status["method"] != tc.want.method || status["recoveryCodesRemaining"] != float64(0) {
							t.Errorf("GET /User twoFactor = %v", status)
						}
						evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{UserID: "new-user", Type: audit.TwoFactorEnabled}, store.Page{Count: 5, Page: 1})
						if err != nil || len(evs) != 1 || evs[0].Detail["method"] != tc.want.method || evs[0].Detail["by"] != "defaultMethod" {
							t.Errorf("two_factor.enabled events = %+v, %v", evs, err)
						}
					}
				})
			}

			t.Run("users that existed before defaultMethod was set stay as they are", func(t *testing.T) {
				e := newEnv(t, be.Open(t))
				mustStatus(t, e.putYAML("/User/old-user", "phoneNumber: '+14155550123'\nphoneVerified: true\npassword: pw-pw-pw-pw\n"), http.StatusCreated)
				mustStatus(t, e.putYAML("/AuthConfig/default", "twoFactor:\n  defaultMethod: sms\n"+hookedAuthConfig), http.StatusCreated)
				mustStatus(t, e.putYAML("/User/old-user", "phoneNumber: '+14155550123'\nphoneVerified: true\nname: {givenName: Old}\n"), http.StatusOK)
				if tf, ok := e.factorOf("old-user"); ok {
					t.Fatalf("a replace applied the default: %+v", tf)
				}
				mustStatus(t, e.putYAML("/User/new-user", "phoneNumber: '+14155550199'\nphoneVerified: true\npassword: pw-pw-pw-pw\n"), http.StatusCreated)
				if tf, ok := e.factorOf("new-user"); !ok || !tf.Enabled || tf.Method != "sms" {
					t.Fatalf("the user created after it did not get it: %+v", tf)
				}
			})

			t.Run("a rejected create stores no factor either", func(t *testing.T) {
				e := newEnv(t, be.Open(t))
				mustStatus(t, e.putYAML("/AuthConfig/default", "twoFactor:\n  defaultMethod: totp\n"), http.StatusCreated)
				mustStatus(t, e.putYAML("/User/first", "email: taken@example.com\npassword: pw-pw-pw-pw\n"), http.StatusCreated)
				r := e.putYAML("/User/second", "email: taken@example.com\npassword: pw-pw-pw-pw\n")
				if r.status < 400 {
					t.Fatalf("a duplicate e-mail was accepted: %d %s", r.status, r.body)
				}
				if tf, ok := e.factorOf("second"); ok {
					t.Fatalf("a factor outlived the refused user: %+v", tf)
				}
			})
		})
	}
}
