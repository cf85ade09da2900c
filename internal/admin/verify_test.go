package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// gateway is a local webhook receiver that keeps the codes it is sent, the
// way an SMS or e-mail gateway would.
type gateway struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]string // destination → newest code
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{tokens: map[string]string{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev notify.CodeEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.tokens[ev.Destination] = ev.Token
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// lockedBuffer collects log output from concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// codeEnv is an admin API whose handler spends verification codes, with a
// gateway that receives the codes and a log that is kept for inspection.
type codeEnv struct {
	*env
	gw   *gateway
	tf   *twofactor.Service
	logs *lockedBuffer
}

func newCodeEnv(t *testing.T, st store.Store) *codeEnv {
	t.Helper()
	e := &codeEnv{env: newEnv(t, st), gw: newGateway(t), logs: &lockedBuffer{}}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := e.h.Now
	rec := &audit.Recorder{Store: st, Logger: logger, Now: clock}
	notifier := &notify.Notifier{AllowPrivate: true, Retries: -1, Logger: logger, Now: clock}
	t.Cleanup(func() { _ = notifier.Close(context.Background()) })
	e.tf = &twofactor.Service{
		Store: st, Sealer: e.h.Sealer, CodeKey: bytes.Repeat([]byte{9}, 32),
		Audit: rec, Notifier: notifier, Logger: logger, Now: clock,
	}
	e.h.Logger, e.h.Audit, e.h.TwoFactor = logger, rec, e.tf
	// The gateway listens on loopback over plain http.
	e.h.Options.AllowPrivate = true
	return e
}

// sendCode sends a verification code for userID and dest the way
// POST /User/{id}/$verification-codes and POST /auth/verification-codes do,
// and returns what the gateway received.
func (e *codeEnv) sendCode(userID, channel, dest string) string {
	e.t.Helper()
	u := store.User{ID: userID}
	_, err := e.tf.SendCode(context.Background(), twofactor.SendInput{
		User: u, Purpose: twofactor.PurposeVerify, Channel: channel, Destination: dest,
		BindingID: resource.VerificationBinding(userID, channel, dest),
		Webhook:   notify.Webhook{Endpoint: e.gw.srv.URL},
	})
	if err != nil {
		e.t.Fatalf("send code to %s: %v", dest, err)
	}
	e.gw.mu.Lock()
	defer e.gw.mu.Unlock()
	code := e.gw.tokens[dest]
	if code == "" {
		e.t.Fatalf("the gateway got no code for %s", dest)
	}
	return code
}

// events lists the user's audit events of one type, newest first.
func (e *env) events(userID, typ string) []store.AuditEvent {
	e.t.Helper()
	evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{UserID: userID, Type: typ}, store.Page{Count: 100, Page: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// mentions reports whether text holds code as a word of its own (not
// inside a random hex id, where six given digits turn up by chance).
func mentions(text, code string) bool {
	return regexp.MustCompile(`(^|[^0-9A-Za-z])` + regexp.QuoteMeta(code) + `([^0-9A-Za-z]|$)`).MatchString(text)
}

// otherCode is a well-formed code that is not code.
func otherCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

const (
	newPhone = "+14155550123"
	newEmail = "roy@example.com"
)

func TestVerificationCodesOnUserWrites(t *testing.T) {
	type outcome struct {
		status   int
		expr     string // the field the OperationOutcome names; "" for a success
		phone    bool   // phoneNumber stored and verified
		email    bool   // email stored and verified
		codeLeft bool   // the right code still works afterwards (it was not spent)
		tried    bool   // the code was checked, and its refusal audited
	}
	cases := []struct {
		name string
		// write sends what the case needs and returns the PUT path, the
		// body and the right code (to look for in responses and logs).
		write func(e *codeEnv) (path, body, code string)
		want  outcome
	}{
		{
			name: "an update with the code sent to the new phone number stores it verified",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				return "/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusOK, phone: true},
		},
		{
			name: "a create with the code, as Freshcom's createCustomer, stores the new user's number verified",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("newbie", "sms", newPhone)
				return "/User/newbie", fmt.Sprintf("password: pw-pw-pw-pw\nphoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusCreated, phone: true},
		},
		{
			name: "an update with the code sent to the new e-mail address stores it verified",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "email", newEmail)
				return "/User/roy", fmt.Sprintf("email: Roy@Example.com\nemailVerificationCode: '%s'\n", code), code
			},
			want: outcome{status: http.StatusOK, email: true},
		},
		{
			name: "a JSON body with both codes verifies both destinations",
			write: func(e *codeEnv) (string, string, string) {
				sms := e.sendCode("roy", "sms", newPhone)
				mail := e.sendCode("roy", "email", newEmail)
				return "/User/roy", fmt.Sprintf(`{"phoneNumber":%q,"phoneVerificationCode":%q,"email":%q,"emailVerificationCode":%q}`,
					newPhone, sms, newEmail, mail), sms
			},
			want: outcome{status: http.StatusOK, phone: true, email: true},
		},
		{
			name: "a wrong code is refused naming phoneVerificationCode, and neither the number nor the password changes",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				return "/User/roy", fmt.Sprintf("password: a-new-password\nphoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, otherCode(code)), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", codeLeft: true, tried: true},
		},
		{
			name: "a wrong e-mail code is refused naming emailVerificationCode",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "email", newEmail)
				return "/User/roy", fmt.Sprintf("email: %s\nemailVerificationCode: '%s'\n", newEmail, otherCode(code)), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "emailVerificationCode", codeLeft: true, tried: true},
		},
		{
			name: "a wrong code on create creates no user",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("newbie", "sms", newPhone)
				return "/User/newbie", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, otherCode(code)), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", codeLeft: true, tried: true},
		},
		{
			name: "an expired code is refused",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				e.now = e.now.Add(twofactor.CodeTTL + time.Second)
				return "/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", tried: true},
		},
		{
			name: "a code already used is refused",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				body := fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code)
				mustStatus(e.t, e.putYAML("/User/roy", body), http.StatusOK)
				mustStatus(e.t, e.putYAML("/User/roy", "password: pw-pw-pw-pw\n"), http.StatusOK) // verified no longer
				return "/User/roy", body, code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", tried: true},
		},
		{
			name: "a code sent to another number proves nothing about this one",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", "+14155550999")
				return "/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", tried: true},
		},
		{
			name: "a code sent for another user proves nothing for this one",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("someone-else", "sms", newPhone)
				return "/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", tried: true},
		},
		{
			name: "a code without the phone number it was sent to is refused before it is tried",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				return "/User/roy", fmt.Sprintf("phoneVerificationCode: '%s'\n", code), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", codeLeft: true},
		},
		{
			name: "after five wrong codes even the right one is refused",
			write: func(e *codeEnv) (string, string, string) {
				code := e.sendCode("roy", "sms", newPhone)
				for range twofactor.MaxAttempts {
					r := e.putYAML("/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, otherCode(code)))
					mustStatus(e.t, r, http.StatusUnprocessableEntity)
				}
				return "/User/roy", fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newPhone, code), code
			},
			want: outcome{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode", tried: true},
		},
		{
			name: "a write refused for another reason leaves the code unspent",
			write: func(e *codeEnv) (string, string, string) {
				mustStatus(e.t, e.putYAML("/User/taken", "email: "+newEmail+"\n"), http.StatusCreated)
				code := e.sendCode("roy", "sms", newPhone)
				return "/User/roy", fmt.Sprintf("email: %s\nphoneNumber: '%s'\nphoneVerificationCode: '%s'\n", newEmail, newPhone, code), code
			},
			want: outcome{status: http.StatusConflict, expr: "email", codeLeft: true},
		},
	}
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := context.Background()
					e := newCodeEnv(t, be.Open(t))
					mustStatus(t, e.putYAML("/User/roy", "password: pw-pw-pw-pw\nname: {givenName: Roy}\n"), http.StatusCreated)
					path, body, code := tc.write(e)
					id := strings.TrimPrefix(path, "/User/")
					before := e.snapshot(path)
					verifiedBefore := len(e.events(id, audit.DestinationVerified))
					failuresBefore := len(e.events(id, audit.TwoFactorFailure))

					ct := "text/yaml"
					if strings.HasPrefix(body, "{") {
						ct = "application/json"
					}
					e.now = e.now.Add(time.Second) // the write's audit events are the newest
					r := e.do(req{method: http.MethodPut, path: path, body: body, contentType: ct})
					mustStatus(t, r, tc.want.status)
					noSecrets(t, r.body, code)
					if tc.want.status < 300 {
						noSecrets(t, r.body, "VerificationCode")
					}
					if tc.want.expr != "" {
						if exprs := r.expressions(t); !contains(exprs, tc.want.expr) {
							t.Fatalf("expressions %v, want %q", exprs, tc.want.expr)
						}
						if after := e.snapshot(path); after != before {
							t.Fatalf("a refused write changed the user:\nbefore %s\nafter  %s", before, after)
						}
					}

					got := e.get(path)
					noSecrets(t, got.body, code, "VerificationCode")
					if tc.want.status < 300 {
						u := got.json(t)
						if tc.want.phone && (u["phoneNumber"] != newPhone || u["phoneVerified"] != true) {
							t.Fatalf("phone not stored verified: %s", got.body)
						}
						if tc.want.email && (u["email"] != newEmail || u["emailVerified"] != true) {
							t.Fatalf("e-mail not stored verified: %s", got.body)
						}
						rec, err := e.st.GetUser(ctx, id)
						if err != nil {
							t.Fatal(err)
						}
						if tc.want.phone != rec.PhoneVerified || tc.want.email != rec.EmailVerified || bytes.Contains(rec.Doc, []byte(code)) {
							t.Fatalf("stored record %+v, doc %s", rec, rec.Doc)
						}
						if tc.want.phone && len(e.events(id, audit.DestinationVerified)) == 0 {
							t.Fatal("no user.destination_verified event")
						}
						if d := e.lastWriteDetail(id); tc.want.phone && d["phoneVerificationCode"] != "accepted" {
							t.Fatalf("admin.write detail %v", d)
						}
					} else if len(e.events(id, audit.DestinationVerified)) != verifiedBefore {
						t.Fatal("a refused write recorded a verified destination")
					}
					if failures := len(e.events(id, audit.TwoFactorFailure)) - failuresBefore; tc.want.tried != (failures == 1) {
						t.Fatalf("%d new two_factor.failure events; the code tried: %v", failures, tc.want.tried)
					}

					if tc.want.codeLeft {
						destField, field, dest := "phoneNumber", "phoneVerificationCode", newPhone
						if tc.want.expr == "emailVerificationCode" {
							destField, field, dest = "email", "emailVerificationCode", newEmail
						}
						again := e.putYAML(path, fmt.Sprintf("%s: '%s'\n%s: '%s'\n", destField, dest, field, code))
						if again.status >= 300 {
							t.Fatalf("the unspent code no longer works: %d %s", again.status, again.body)
						}
					}

					if audits := e.get("/AuditEvent?user=" + id); mentions(string(audits.body), code) {
						t.Fatalf("the code %s is in the audit log: %s", code, audits.body)
					}
					if mentions(e.logs.String(), code) {
						t.Fatalf("the code %s is in the log:\n%s", code, e.logs.String())
					}
				})
			}
		})
	}
}

func TestAdminTurnsOnCodeFactors(t *testing.T) {
	type want struct {
		status   int
		expr     string // named field of a refusal
		method   string // enabled method afterwards, "" for none
		dest     string
		previous string // previousMethod of the two_factor.enabled event
	}
	const verifiedPhone = "phoneNumber: '" + newPhone + "'\nphoneVerified: true\n"
	const verifiedEmail = "email: " + newEmail + "\nemailVerified: true\n"
	cases := []struct {
		name       string
		noWebhook  bool
		before     func(e *codeEnv) // the state the admin finds
		body       func(e *codeEnv) string
		want       want
		msgContain string // in the diagnostics of a refusal
	}{
		{
			name: "an admin turns on SMS codes for a verified phone number",
			body: func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: sms}\n" },
			want: want{status: http.StatusOK, method: "sms", dest: newPhone},
		},
		{
			name: "an admin turns on e-mail codes for a verified address",
			body: func(*codeEnv) string { return verifiedEmail + "twoFactor: {enabled: true, method: email}\n" },
			want: want{status: http.StatusOK, method: "email", dest: newEmail},
		},
		{
			name: "the code that verifies the number in the same write lets SMS codes go to it",
			body: func(e *codeEnv) string {
				code := e.sendCode("roy", "sms", newPhone)
				return fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\ntwoFactor: {enabled: true, method: sms}\n", newPhone, code)
			},
			want: want{status: http.StatusOK, method: "sms", dest: newPhone},
		},
		{
			name:   "an admin moves a user's SMS codes to e-mail",
			before: func(e *codeEnv) { e.enable("sms", newPhone) },
			body: func(*codeEnv) string {
				return verifiedPhone + verifiedEmail + "twoFactor: {enabled: true, method: email}\n"
			},
			want: want{status: http.StatusOK, method: "email", dest: newEmail, previous: "sms"},
		},
		{
			name:   "an admin replaces a user's TOTP with SMS codes, and the secret goes",
			before: func(e *codeEnv) { e.enable("totp", "") },
			body:   func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: sms}\n" },
			want:   want{status: http.StatusOK, method: "sms", dest: newPhone, previous: "totp"},
		},
		{
			name:   "an admin confirming the SMS codes the user has changes nothing",
			before: func(e *codeEnv) { e.enable("sms", newPhone) },
			body:   func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: sms}\n" },
			want:   want{status: http.StatusOK, method: "sms", dest: newPhone},
		},
		{
			name: "SMS codes for an unverified phone number are refused naming phoneNumber",
			body: func(*codeEnv) string {
				return "phoneNumber: '" + newPhone + "'\ntwoFactor: {enabled: true, method: sms}\n"
			},
			want:       want{status: http.StatusUnprocessableEntity, expr: "phoneNumber"},
			msgContain: "verified",
		},
		{
			name:       "SMS codes for a user without a phone number are refused naming phoneNumber",
			body:       func(*codeEnv) string { return "twoFactor: {enabled: true, method: sms}\n" },
			want:       want{status: http.StatusUnprocessableEntity, expr: "phoneNumber"},
			msgContain: "phone number",
		},
		{
			name:       "e-mail codes for an unverified address are refused naming email",
			body:       func(*codeEnv) string { return "email: " + newEmail + "\ntwoFactor: {enabled: true, method: email}\n" },
			want:       want{status: http.StatusUnprocessableEntity, expr: "email"},
			msgContain: "verified",
		},
		{
			name: "a wrong code in the same write turns nothing on",
			body: func(e *codeEnv) string {
				code := e.sendCode("roy", "sms", newPhone)
				return fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\ntwoFactor: {enabled: true, method: sms}\n", newPhone, otherCode(code))
			},
			want: want{status: http.StatusUnprocessableEntity, expr: "phoneVerificationCode"},
		},
		{
			name:       "an admin cannot set up TOTP for a user",
			body:       func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: totp}\n" },
			want:       want{status: http.StatusUnprocessableEntity, expr: "twoFactor.method"},
			msgContain: "authenticator app",
		},
		{
			name:       "an admin cannot replace SMS codes with TOTP either",
			before:     func(e *codeEnv) { e.enable("sms", newPhone) },
			body:       func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: totp}\n" },
			want:       want{status: http.StatusUnprocessableEntity, expr: "twoFactor.method", method: "sms", dest: newPhone},
			msgContain: "not set a TOTP secret",
		},
		{
			name:       "codes nobody could deliver are refused",
			noWebhook:  true,
			body:       func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: true, method: sms}\n" },
			want:       want{status: http.StatusUnprocessableEntity, expr: "twoFactor.method"},
			msgContain: "webhook",
		},
		{
			name:   "enabled false still resets the factor",
			before: func(e *codeEnv) { e.enable("sms", newPhone) },
			body:   func(*codeEnv) string { return verifiedPhone + "twoFactor: {enabled: false}\n" },
			want:   want{status: http.StatusOK},
		},
	}
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := context.Background()
					e := newCodeEnv(t, be.Open(t))
					if !tc.noWebhook {
						mustStatus(t, e.putYAML("/AuthConfig/default", "twoFactor:\n  webhook: {endpoint: '"+e.gw.srv.URL+"'}\n"), http.StatusCreated)
					}
					mustStatus(t, e.putYAML("/User/roy", "password: pw-pw-pw-pw\n"), http.StatusCreated)
					if tc.before != nil {
						tc.before(e)
					}
					priorFactor, hadFactor := e.factorOf("roy")
					enabledBefore := len(e.events("roy", audit.TwoFactorEnabled))
					if err := e.st.CreateBrowserSession(ctx, store.BrowserSession{ID: "roy-session", UserID: "roy", AuthTime: e.now,
						CreatedAt: e.now, UpdatedAt: e.now, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
						t.Fatal(err)
					}
					before := e.snapshot("/User/roy")

					body := tc.body(e)
					e.now = e.now.Add(time.Second) // the write's audit events are the newest
					r := e.putYAML("/User/roy", body)
					mustStatus(t, r, tc.want.status)
					if tc.want.expr != "" {
						if exprs := r.expressions(t); !contains(exprs, tc.want.expr) {
							t.Fatalf("expressions %v, want %q", exprs, tc.want.expr)
						}
						if !strings.Contains(string(r.body), tc.msgContain) {
							t.Fatalf("the refusal does not say %q: %s", tc.msgContain, r.body)
						}
						if after := e.snapshot("/User/roy"); after != before {
							t.Fatalf("a refused write changed the user:\nbefore %s\nafter  %s", before, after)
						}
					}

					tf, ok := e.factorOf("roy")
					view := e.get("/User/roy").json(t)["twoFactor"].(map[string]any)
					if tc.want.method == "" {
						if tc.want.expr == "" && ok && tf.Enabled {
							t.Fatalf("factor still on: %+v", tf)
						}
						if tc.want.expr != "" && (ok != hadFactor || tf.Method != priorFactor.Method) {
							t.Fatalf("a refused write changed the factor: %+v", tf)
						}
						return
					}
					if !ok || !tf.Enabled || tf.Method != tc.want.method || tf.Destination != tc.want.dest || len(tf.Secret) != 0 {
						t.Fatalf("factor %+v, want %s to %s", tf, tc.want.method, tc.want.dest)
					}
					if view["enabled"] != true || view["method"] != tc.want.method {
						t.Fatalf("GET shows twoFactor %v", view)
					}
					changed := !hadFactor || priorFactor.Method != tc.want.method || priorFactor.Destination != tc.want.dest
					evs := e.events("roy", audit.TwoFactorEnabled)
					if !changed || tc.want.expr != "" {
						if len(evs) != enabledBefore {
							t.Fatalf("nothing changed, yet %d new two_factor.enabled events", len(evs)-enabledBefore)
						}
						return
					}
					if len(evs) != enabledBefore+1 {
						t.Fatalf("%d new two_factor.enabled events, want 1", len(evs)-enabledBefore)
					}
					d := evs[0].Detail
					if d["by"] != "admin" || d["actor"] != "basic:admin" || d["method"] != tc.want.method ||
						d["previousMethod"] != tc.want.previous || d["destination"] != twofactor.MaskDestination(tc.want.dest) {
						t.Fatalf("two_factor.enabled detail %v", d)
					}
					if w := e.lastWriteDetail("roy"); w["twoFactor"] != tc.want.method+":enabled" {
						t.Fatalf("admin.write detail %v", w)
					}
					if _, err := e.st.GetBrowserSession(ctx, "roy-session"); err == nil {
						t.Fatal("the user's session survives a change of second factor")
					}
				})
			}
		})
	}
}

// enable gives roy a factor directly in the store, as an enrolment would.
func (e *codeEnv) enable(method, dest string) {
	e.t.Helper()
	ctx := context.Background()
	rec, err := e.st.GetUser(ctx, "roy")
	if err != nil {
		e.t.Fatal(err)
	}
	tf := store.TwoFactor{UserID: "roy", Method: method, Enabled: true, Destination: dest, EnrolledAt: e.now, UpdatedAt: e.now}
	switch method {
	case "sms":
		rec.PhoneNumber, rec.PhoneVerified = dest, true
	case "totp":
		tf.Secret = e.h.Sealer.Seal([]byte("JBSWY3DPEHPK3PXP"), []byte("roy"))
	}
	if _, _, err := e.st.PutUser(ctx, rec, rec.Version); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.PutTwoFactor(ctx, tf); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.ReplaceRecoveryCodes(ctx, "roy", []string{secret.RandomToken(8)}); err != nil {
		e.t.Fatal(err)
	}
}

func TestConcurrentWritesWithOneCodeHaveOneWinner(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newCodeEnv(t, be.Open(t))
			mustStatus(t, e.putYAML("/User/roy", "password: pw-pw-pw-pw\n"), http.StatusCreated)
			code := e.sendCode("roy", "sms", newPhone)
			const n = 4 // within the code's five tries
			statuses := make(chan int, n)
			for i := range n {
				go func() {
					body := fmt.Sprintf("phoneNumber: '%s'\nphoneVerificationCode: '%s'\nname: {givenName: writer-%d}\n", newPhone, code, i)
					hr := httptest.NewRequest(http.MethodPut, "/User/roy", strings.NewReader(body))
					hr.Header.Set("Content-Type", "text/yaml")
					hr.SetBasicAuth(adminUser, adminPassword)
					rec := httptest.NewRecorder()
					e.mux.ServeHTTP(rec, hr)
					statuses <- rec.Code
				}()
			}
			won := 0
			for range n {
				switch s := <-statuses; s {
				case http.StatusOK:
					won++
				case http.StatusUnprocessableEntity:
				default:
					t.Errorf("unexpected status %d", s)
				}
			}
			if won != 1 {
				t.Fatalf("%d writes spent the one code, want exactly 1", won)
			}
			if got := len(e.events("roy", audit.DestinationVerified)); got != 1 {
				t.Fatalf("%d user.destination_verified events, want 1", got)
			}
		})
	}
}
