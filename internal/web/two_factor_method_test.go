package web_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
	"github.com/gatehouse/gatehouse/internal/web"
)

const (
	alicePhone = "+14155550123"
	noticeID   = `id="notice"`
)

var errorRe = regexp.MustCompile(`<p id="error" class="error" role="alert">([^<]*)</p>`)

// errorOf is the text of #error, "" when the page has none.
func errorOf(p page) string {
	if m := errorRe.FindStringSubmatch(p.body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// sent is one code as the webhook receiver (an SMS or e-mail gateway) got it.
type sent struct {
	Token, Channel, Destination string
}

// sentSince decodes the webhook requests after the first n.
func sentSince(t *testing.T, h *hook, n int) []sent {
	t.Helper()
	var out []sent
	for _, r := range h.received()[n:] {
		var s sent
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("webhook body %s: %v", r.body, err)
		}
		out = append(out, s)
	}
	return out
}

// sentTo is the newest code delivered to dest after the first n requests.
func sentTo(t *testing.T, h *hook, n int, dest string) string {
	t.Helper()
	all := sentSince(t, h, n)
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Destination == dest {
			return all[i].Token
		}
	}
	t.Fatalf("no code was sent to %s; the receiver got %+v", dest, all)
	return ""
}

func hasField(p page, name string) bool { return strings.Contains(p.body, `name="`+name+`"`) }

// methodForm posts a form of the method pages with the page's CSRF token.
func (b *browser) methodForm(p page, values url.Values) page {
	b.e.t.Helper()
	values.Set("_csrf", csrfOf(b.e.t, p))
	return b.post(web.PathTwoFactorMethod, values)
}

func (e *env) factor(id string) (store.TwoFactor, bool) {
	e.t.Helper()
	tf, err := e.st.GetTwoFactor(context.Background(), id)
	if err != nil {
		return store.TwoFactor{}, false
	}
	return tf, true
}

func (e *env) user(id string) store.User {
	e.t.Helper()
	u, err := e.st.GetUser(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func TestSwitchingMethodsOnTheSettingsPage(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		rcv := &hook{}
		e.startHook(rcv, 2000)
		b := e.browser()
		b.signIn()

		t.Run("the settings page offers an app, text messages and e-mail", func(t *testing.T) {
			p := b.get("/auth/two-factor")
			for _, id := range []string{`id="enable-two-factor"`, `id="switch-sms"`, `id="switch-email"`} {
				if !strings.Contains(p.body, id) {
					t.Fatalf("no %s on the settings page:\n%s", id, p.body)
				}
			}
		})

		var confirm page
		t.Run("a phone number typed with spaces gets a verification code; the page never shows it", func(t *testing.T) {
			p := b.get("/auth/two-factor/method?method=sms")
			if p.status != http.StatusOK || !hasField(p, "destination") {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			n := len(rcv.received())
			confirm = b.methodForm(p, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {"+1 415 555-0123"}})
			code := sentTo(t, rcv, n, alicePhone)
			if all := sentSince(t, rcv, n); len(all) != 1 || all[0].Channel != "sms" {
				t.Fatalf("the gateway got %+v", all)
			}
			if !hasField(confirm, "code") || hasField(confirm, "current_code") || strings.Contains(confirm.body, code) {
				t.Fatalf("confirm step:\n%s", confirm.body)
			}
			if text := html.UnescapeString(confirm.body); !strings.Contains(text, `id="destination-masked">`+twofactor.MaskDestination(alicePhone)) {
				t.Fatalf("the destination is not shown masked:\n%s", confirm.body)
			}
		})

		t.Run("a wrong code or one sent for another number changes nothing", func(t *testing.T) {
			n := len(rcv.received())
			b.methodForm(b.get("/auth/two-factor/method?method=sms"), url.Values{"method": {"sms"}, "step": {"send"}, "destination": {"+14155550999"}})
			foreign := sentTo(t, rcv, n, "+14155550999")
			// Four tries: a binding takes five before even the right code
			// is refused.
			for _, code := range []string{foreign, "000000", "12345", strings.Repeat("9", 1000)} {
				p := b.methodForm(confirm, url.Values{"method": {"sms"}, "step": {"confirm"}, "destination": {alicePhone}, "code": {code}})
				if errorOf(p) != "Invalid code" || !hasField(p, "code") {
					t.Fatalf("code %.20q: status %d\n%s", code, p.status, p.body)
				}
			}
			if u := e.user("alice"); u.PhoneVerified || u.PhoneNumber != "" {
				t.Fatalf("user changed: %+v", u)
			}
			if _, ok := e.factor("alice"); ok {
				t.Fatal("a factor was stored")
			}
		})

		t.Run("the right code verifies the phone and turns text messages on, with recovery codes", func(t *testing.T) {
			// "Send the code again" delivers a new one, which works.
			n := len(rcv.received())
			p := b.methodForm(confirm, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {alicePhone}, "resend": {"1"}})
			code := sentTo(t, rcv, n, alicePhone)
			p = b.methodForm(p, url.Values{"method": {"sms"}, "step": {"confirm"}, "destination": {alicePhone}, "code": {code}})
			if codes := recoveryCodes(t, p); len(codes) != twofactor.RecoveryCodeN {
				t.Fatalf("%d recovery codes", len(codes))
			}
			tf, ok := e.factor("alice")
			if !ok || !tf.Enabled || tf.Method != twofactor.MethodSMS || tf.Destination != alicePhone {
				t.Fatalf("factor %+v", tf)
			}
			u := e.user("alice")
			doc, err := resource.UserFromStore(u)
			if err != nil || !u.PhoneVerified || u.PhoneNumber != alicePhone || !doc.PhoneVerified {
				t.Fatalf("user %+v doc %+v %v", u, doc, err)
			}
			if auditCount(t, e.st, "alice", web.EventDestinationVerified) != 1 || auditCount(t, e.st, "alice", audit.TwoFactorEnabled) != 1 {
				t.Fatal("missing audit events")
			}
			if auditCount(t, e.st, "alice", web.EventMethodChanged) != 0 {
				t.Fatal("turning a method on was recorded as a change")
			}
		})

		var emailConfirm page
		n := 0
		t.Run("switching to e-mail sends a code to the address and one to the phone", func(t *testing.T) {
			p := b.get("/auth/two-factor/method?method=email")
			if !strings.Contains(p.body, `value="alice@example.com"`) {
				t.Fatalf("the address is not offered:\n%s", p.body)
			}
			n = len(rcv.received())
			emailConfirm = b.methodForm(p, url.Values{"method": {"email"}, "step": {"send"}, "destination": {"Alice@Example.com"}})
			all := sentSince(t, rcv, n)
			if len(all) != 2 {
				t.Fatalf("the gateway got %+v", all)
			}
			if !hasField(emailConfirm, "code") || !hasField(emailConfirm, "current_code") {
				t.Fatalf("confirm step:\n%s", emailConfirm.body)
			}
		})

		t.Run("a wrong code of the current factor keeps text messages on, the address stays verified", func(t *testing.T) {
			p := b.methodForm(emailConfirm, url.Values{"method": {"email"}, "step": {"confirm"}, "destination": {"alice@example.com"},
				"code": {sentTo(t, rcv, n, "alice@example.com")}, "current_code": {"000000"}})
			if errorOf(p) != "Invalid code" || hasField(p, "code") || !hasField(p, "current_code") {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if tf, _ := e.factor("alice"); tf.Method != twofactor.MethodSMS {
				t.Fatalf("factor %+v", tf)
			}
			if u := e.user("alice"); !u.EmailVerified {
				t.Fatal("the verified address was not kept")
			}
			emailConfirm = p
		})

		t.Run("the phone's code switches to e-mail and is recorded as a method change", func(t *testing.T) {
			p := b.methodForm(emailConfirm, url.Values{"method": {"email"}, "step": {"confirm"}, "destination": {"alice@example.com"},
				"current_code": {sentTo(t, rcv, n, alicePhone)}})
			if codes := recoveryCodes(t, p); len(codes) != twofactor.RecoveryCodeN {
				t.Fatalf("%d recovery codes\n%s", len(codes), p.body)
			}
			tf, _ := e.factor("alice")
			if !tf.Enabled || tf.Method != twofactor.MethodEmail || tf.Destination != "alice@example.com" {
				t.Fatalf("factor %+v", tf)
			}
			evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{UserID: "alice", Type: web.EventMethodChanged}, store.Page{Count: 5, Page: 1})
			if err != nil || len(evs) != 1 || evs[0].Detail["from"] != "sms" || evs[0].Detail["to"] != "email" {
				t.Fatalf("method change events %+v, %v", evs, err)
			}
		})

		t.Run("an authenticator app replaces e-mail codes with the app's code and an e-mailed one", func(t *testing.T) {
			n := len(rcv.received())
			p := b.get("/auth/two-factor/method?method=totp")
			secret := find(t, secretRe, p, "#totp-secret")
			if !hasField(p, "current_code") || !strings.Contains(p.body, `id="resend-code"`) {
				t.Fatalf("switch page:\n%s", p.body)
			}
			emailed := sentTo(t, rcv, n, "alice@example.com")
			form := url.Values{"method": {"totp"}, "step": {"confirm"}, "code": {e.wrongCode(secret)}, "current_code": {emailed}}
			p = b.methodForm(p, form)
			if errorOf(p) != "Invalid code" || find(t, secretRe, p, "#totp-secret") != secret {
				t.Fatalf("a wrong app code: status %d\n%s", p.status, p.body)
			}
			if tf, _ := e.factor("alice"); tf.Method != twofactor.MethodEmail {
				t.Fatalf("a refused switch changed the factor: %+v", tf)
			}
			// The e-mailed code was spent on the refused try: get another.
			n = len(rcv.received())
			p = b.get("/auth/two-factor/method?method=totp")
			form.Set("code", e.totpCode(secret))
			form.Set("current_code", sentTo(t, rcv, n, "alice@example.com"))
			p = b.methodForm(p, form)
			if codes := recoveryCodes(t, p); len(codes) != twofactor.RecoveryCodeN {
				t.Fatalf("%d recovery codes\n%s", len(codes), p.body)
			}
			if tf, _ := e.factor("alice"); !tf.Enabled || tf.Method != twofactor.MethodTOTP || tf.Destination != "" {
				t.Fatalf("factor %+v", tf)
			}
			e.nextStep()
			e.browser().withPrompt(authorizeQuery(firstParty)).assert(t, e, e.totpCode(secret))
		})

		t.Run("every change needs a recent password", func(t *testing.T) {
			e.clock.Advance(web.ReauthWindow + time.Minute)
			p := b.get("/auth/two-factor/method?method=sms")
			if p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})

		t.Run("a form without the CSRF token is refused", func(t *testing.T) {
			p := b.post(web.PathTwoFactorMethod, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {alicePhone}})
			if p.status != http.StatusForbidden {
				t.Fatalf("status %d", p.status)
			}
		})
	})
}

// withPrompt starts an authorization as alice and returns the browser and
// its code prompt.
func (b *browser) withPrompt(q url.Values) promptedBrowser {
	return promptedBrowser{b: b, prompt: b.passwordStep(q)}
}

type promptedBrowser struct {
	b      *browser
	prompt page
}

// assert types code into the prompt and checks the sign-in's amr.
func (pb promptedBrowser) assert(t *testing.T, e *env, code string) {
	t.Helper()
	assertMFAToken(t, e, pb.b, pb.b.submitCode(pb.prompt, code), firstParty, webappSecret)
}

// codeUser gives alice a verified phone and address and turns on codes by
// method through the default AuthConfig's webhook (startHook).
func (e *env) codeUser(method string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := resource.SetVerifiedDestination(ctx, e.st, "alice", resource.MethodSMS, alicePhone); err != nil {
		e.t.Fatal(err)
	}
	if _, err := resource.SetVerifiedDestination(ctx, e.st, "alice", resource.MethodEmail, "alice@example.com"); err != nil {
		e.t.Fatal(err)
	}
	ac, err := resource.ResolveAuthConfig(ctx, e.st, resource.Client{})
	if err != nil {
		e.t.Fatal(err)
	}
	w := ac.Webhook()
	if _, err := e.tf.EnableCodeMethod(ctx, twofactor.EnableCodeInput{
		UserID: "alice", Method: method, Webhook: notifyWebhookOf(w),
	}); err != nil {
		e.t.Fatal(err)
	}
}

func TestCodeMethodsNeedADelivery(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	b.signIn()
	t.Run("the settings page offers only an app", func(t *testing.T) {
		p := b.get("/auth/two-factor")
		if !strings.Contains(p.body, `id="enable-two-factor"`) || strings.Contains(p.body, `id="switch-sms"`) || strings.Contains(p.body, `id="switch-email"`) {
			t.Fatalf("settings page:\n%s", p.body)
		}
	})
	for _, method := range []string{"sms", "email"} {
		t.Run(method+" is refused with a clear error", func(t *testing.T) {
			p := b.get("/auth/two-factor/method?method=" + method)
			if p.status != http.StatusOK || !strings.Contains(errorOf(p), "no delivery is configured") {
				t.Fatalf("GET: status %d\n%s", p.status, p.body)
			}
			// The page has no form of its own to take a CSRF token from.
			p = b.methodForm(b.get("/auth/two-factor/enable"), url.Values{"method": {method}, "step": {"send"}, "destination": {alicePhone}})
			if !strings.Contains(errorOf(p), "no delivery is configured") {
				t.Fatalf("POST: status %d\n%s", p.status, p.body)
			}
			if _, ok := e.factor("alice"); ok {
				t.Fatal("a factor was stored")
			}
		})
	}
}

func TestVerificationRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		rcv := &hook{}
		e.startHook(rcv, 2000)
		e.putUser("bob", "bob@example.com", alicePassword, false)
		if _, err := resource.SetVerifiedDestination(context.Background(), e.st, "bob", resource.MethodSMS, "+14155550100"); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		b.signIn()
		start := b.get("/auth/two-factor/method?method=sms")

		t.Run("another account's verified phone gets no code", func(t *testing.T) {
			n := len(rcv.received())
			p := b.methodForm(start, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {"+14155550100"}})
			if errorOf(p) != "This phone number or e-mail address belongs to another account." || !hasField(p, "destination") {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if len(rcv.received()) != n {
				t.Fatal("a code was sent")
			}
		})
		t.Run("another account's address gets no code", func(t *testing.T) {
			p := b.methodForm(b.get("/auth/two-factor/method?method=email"), url.Values{"method": {"email"}, "step": {"send"}, "destination": {"bob@example.com"}})
			if errorOf(p) != "This phone number or e-mail address belongs to another account." {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})
		t.Run("something that is not a phone number is refused before anything is sent", func(t *testing.T) {
			n := len(rcv.received())
			p := b.methodForm(start, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {"call me"}})
			if !strings.Contains(errorOf(p), "international format") || len(rcv.received()) != n {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})
		t.Run("a sixth code within the hour is refused with 'too many'", func(t *testing.T) {
			n := len(rcv.received())
			var p page
			for i := range twofactor.SendLimit + 1 {
				p = b.methodForm(start, url.Values{"method": {"sms"}, "step": {"send"}, "destination": {"+14155550142"}})
				if i < twofactor.SendLimit && errorOf(p) != "" {
					t.Fatalf("send %d: %s", i+1, errorOf(p))
				}
			}
			if !strings.Contains(errorOf(p), "Too many codes") {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if got := len(rcv.received()) - n; got != twofactor.SendLimit {
				t.Fatalf("%d codes went out, want %d", got, twofactor.SendLimit)
			}
		})
		t.Run("'belongs to another account' is answered only within the hourly look-up budget the JSON API shares", func(t *testing.T) {
			var p page
			for range resource.DestinationLookups {
				p = b.methodForm(b.get("/auth/two-factor/method?method=email"), url.Values{"method": {"email"}, "step": {"send"}, "destination": {"bob@example.com"}})
			}
			if !strings.Contains(errorOf(p), "Too many phone numbers or e-mail addresses") {
				t.Fatalf("after the budget: status %d\n%s", p.status, p.body)
			}
		})
	})
}

func TestCodePromptPerMethod(t *testing.T) {
	cases := []struct {
		name, method, lead string
		resend             bool
	}{
		{"an authenticator app without a webhook", "totp", "from your authenticator app", false},
		{"text messages", "sms", "by text message to " + twofactor.MaskDestination(alicePhone), true},
		{"e-mail", "email", "by e-mail to " + twofactor.MaskDestination("alice@example.com"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, gormstoretest.Open(t))
			rcv := &hook{}
			if tc.method == "totp" {
				e.enrolAlice()
			} else {
				e.startHook(rcv, 2000)
				e.codeUser(tc.method)
			}
			b := e.browser()
			prompt := b.passwordStep(authorizeQuery(firstParty))
			text := html.UnescapeString(prompt.body)
			t.Run("the prompt says where the code comes from and offers a recovery code", func(t *testing.T) {
				if !strings.Contains(text, tc.lead) || !strings.Contains(prompt.body, `id="recovery-hint"`) {
					t.Fatalf("prompt:\n%s", prompt.body)
				}
				if strings.Contains(text, alicePhone) {
					t.Fatal("the phone number is shown in full")
				}
				if got := strings.Contains(prompt.body, `id="resend-code"`); got != tc.resend {
					t.Fatalf("send-again link shown: %v", got)
				}
			})
			if tc.method == "totp" {
				return
			}
			t.Run("send again delivers a new code that signs in", func(t *testing.T) {
				n := len(rcv.received())
				again := b.get("/auth/login/two-factor")
				all := sentSince(t, rcv, n)
				if len(all) != 1 || all[0].Channel != tc.method {
					t.Fatalf("the gateway got %+v", all)
				}
				assertMFAToken(t, e, b, b.submitCode(again, all[0].Token), firstParty, webappSecret)
			})
			t.Run("past the send limit the prompt says so and still takes a code", func(t *testing.T) {
				b := e.browser()
				var p page
				for range twofactor.SendLimit {
					p = b.passwordStep(authorizeQuery(firstParty))
				}
				if !strings.Contains(p.body, noticeID) || !strings.Contains(p.body, "Too many codes") || !hasField(p, "code") {
					t.Fatalf("prompt:\n%s", p.body)
				}
			})
		})
	}
}

// signInWithCode signs alice in through the code prompt, with the code the
// gateway receives.
func (b *browser) signInWithCode(rcv *hook) {
	b.e.t.Helper()
	p := b.login(b.get("/auth/login"), "alice", alicePassword)
	if p.location != "/auth/login/two-factor" {
		b.e.t.Fatalf("after the password: status %d location %q", p.status, p.location)
	}
	n := len(rcv.received())
	prompt := b.get(p.location)
	code := sentTo(b.e.t, rcv, n, alicePhone)
	if p = b.follow(b.submitCode(prompt, code)); !signedIn(p) {
		b.e.t.Fatalf("not signed in:\n%s", p.body)
	}
}

func notifyWebhookOf(w *resource.Webhook) notify.Webhook {
	return notify.Webhook{Endpoint: w.Endpoint, TimeoutMS: w.Timeout, Headers: w.Headers, Secret: w.Secret}
}

func TestNewRecoveryCodesForTextMessages(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	rcv := &hook{}
	e.startHook(rcv, 2000)
	e.codeUser(twofactor.MethodSMS)
	b := e.browser()
	b.signInWithCode(rcv)

	t.Run("the settings page links to a page that sends a code", func(t *testing.T) {
		p := b.get("/auth/two-factor")
		if !strings.Contains(p.body, `id="new-recovery-codes"`) || hasField(p, "code") {
			t.Fatalf("settings page:\n%s", p.body)
		}
	})
	n := len(rcv.received())
	p := b.get("/auth/two-factor/recovery-codes")
	code := sentTo(t, rcv, n, alicePhone)
	t.Run("a wrong code asks again", func(t *testing.T) {
		p := b.post("/auth/two-factor/recovery-codes", url.Values{"_csrf": {csrfOf(t, p)}, "code": {"000000"}})
		if errorOf(p) != "Invalid code" || !hasField(p, "code") || !strings.Contains(p.body, `id="resend-code"`) {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})
	t.Run("the texted code gets new recovery codes", func(t *testing.T) {
		p := b.post("/auth/two-factor/recovery-codes", url.Values{"_csrf": {csrfOf(t, p)}, "code": {code}})
		if codes := recoveryCodes(t, p); len(codes) != twofactor.RecoveryCodeN {
			t.Fatalf("%d codes", len(codes))
		}
	})
}

func TestATOTPEnrolmentDueStepsUpASignedInSession(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	b.signIn()
	if err := e.st.PutTwoFactor(context.Background(), resource.TOTPEnrolmentMarker("alice", e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	t.Run("with a fresh password the session goes straight to the enrolment", func(t *testing.T) {
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode())
		if p.location != "/auth/login/two-factor" {
			t.Fatalf("status %d location %q: the session went on without enrolling", p.status, p.location)
		}
		if p = b.get(p.location); !strings.Contains(p.body, `id="totp-secret"`) || !strings.Contains(p.body, "required for your account") {
			t.Fatalf("no enrolment for the account:\n%s", p.body)
		}
	})
	t.Run("with an old password the enrolment waits for the password again", func(t *testing.T) {
		e.clock.Advance(web.ReauthWindow + time.Minute)
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q: enrolment without a recent password", p.status, p.location)
		}
		p = b.login(b.get(p.location), "alice", alicePassword)
		if p.location != "/auth/login/two-factor" {
			t.Fatalf("after the password: status %d location %q", p.status, p.location)
		}
		if p = b.get(p.location); !strings.Contains(p.body, `id="totp-secret"`) {
			t.Fatalf("no enrolment for the account:\n%s", p.body)
		}
	})
}
