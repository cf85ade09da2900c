package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

const (
	userPass      = "a long enough password"
	mobile2Secret = "mobile2-secret-0123456789"
)

// gatewayMsg is the webhook payload as an SMS gateway receives it.
type gatewayMsg struct {
	Event       string `json:"event"`
	Token       string `json:"token"`
	Channel     string `json:"channel"`
	Destination string `json:"destination"`
	User        struct {
		ID string `json:"id"`
	} `json:"user"`
}

// gateway is a local webhook receiver that captures codes.
type gateway struct {
	mu   sync.Mutex
	msgs []gatewayMsg
	url  string
}

func newGateway(t testing.TB) *gateway {
	g := &gateway{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m gatewayMsg
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.msgs = append(g.msgs, m)
		g.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// last returns the newest message for userID.
func (g *gateway) last(t testing.TB, userID string) gatewayMsg {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.msgs) - 1; i >= 0; i-- {
		if g.msgs[i].User.ID == userID {
			return g.msgs[i]
		}
	}
	t.Fatalf("the gateway received nothing for %s", userID)
	return gatewayMsg{}
}

func (g *gateway) count(userID string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.msgs {
		if m.User.ID == userID {
			n++
		}
	}
	return n
}

type mfaEnv struct {
	*env
	tf *twofactor.Service
	gw *gateway
}

// forEachMFABackend runs fn on every backend against a provider with second
// factors on, a default AuthConfig whose webhook is a local gateway, and a
// second password client.
func forEachMFABackend(t *testing.T, fn func(t *testing.T, m *mfaEnv)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newMFAEnv(t, b.Open(t)))
		})
	}
}

func newMFAEnv(t testing.TB, st store.Store) *mfaEnv {
	t.Helper()
	m := &mfaEnv{gw: newGateway(t)}
	m.env = newEnvWith(t, st, func(e *env) {
		sealer, err := secret.NewSealer(secret.Derive(e.master, secret.PurposeAtRest))
		if err != nil {
			t.Fatal(err)
		}
		logger := slog.New(slog.DiscardHandler)
		rec := &audit.Recorder{Store: st, Logger: logger, Now: e.clock.Now}
		n := &notify.Notifier{AllowPrivate: true, Retries: -1, Logger: logger, Now: e.clock.Now}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Close(ctx)
		})
		m.tf = &twofactor.Service{
			Store:    st,
			Sealer:   sealer,
			CodeKey:  secret.Derive(e.master, secret.PurposeCodeMAC),
			Audit:    rec,
			Notifier: n,
			Logger:   logger,
			Now:      e.clock.Now,
		}
		e.twoFactor = m.tf
	})
	rec, err := resource.ToStoreAuthConfig(resource.AuthConfig{
		ID:        resource.DefaultAuthConfigID,
		TwoFactor: &resource.AuthConfigTwoFactor{Webhook: &resource.Webhook{Endpoint: m.gw.url, Timeout: 2000}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutAuthConfig(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	m.putClient(resource.Client{
		ID:         "mobile2",
		GrantTypes: []string{"password"},
		Scope:      []string{"patient.read"},
	}, mobile2Secret)
	return m
}

func (m *mfaEnv) webhook() notify.Webhook { return notify.Webhook{Endpoint: m.gw.url} }

// totpUser creates a user with a password and TOTP, enrolled a minute ago
// so that the current step is unused, and returns the secret and the
// recovery codes.
func (m *mfaEnv) totpUser(t testing.TB, id string) (string, []string) {
	t.Helper()
	m.putUser(resource.User{ID: id, Email: id + "@example.test"}, userPass)
	u, err := m.st.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	m.clock.Advance(-time.Minute)
	defer m.clock.Advance(time.Minute)
	en, err := m.tf.BeginTOTP(u, "Gatehouse")
	if err != nil {
		t.Fatal(err)
	}
	codes, err := m.tf.ConfirmTOTP(context.Background(), twofactor.ConfirmInput{
		UserID: id, Secret: en.Secret, Code: totpAt(t, en.Secret, m.clock.Now()), PastSteps: 1,
	})
	if err != nil {
		t.Fatalf("confirm totp: %v", err)
	}
	return en.Secret, codes
}

// smsUser creates a user whose verified phone receives SMS codes.
func (m *mfaEnv) smsUser(t testing.TB, id string) []string {
	t.Helper()
	m.putUser(resource.User{ID: id, Email: id + "@example.test", PhoneNumber: "+14155550199"}, userPass)
	ctx := context.Background()
	u, err := m.st.GetUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	u.PhoneVerified = true
	if _, _, err := m.st.PutUser(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	codes, err := m.tf.EnableCodeMethod(ctx, twofactor.EnableCodeInput{UserID: id, Method: twofactor.MethodSMS, Webhook: m.webhook()})
	if err != nil {
		t.Fatalf("enable sms: %v", err)
	}
	return codes
}

func totpAt(t testing.TB, b32 string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(b32, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func (m *mfaEnv) totpNow(t testing.TB, b32 string) string { return totpAt(t, b32, m.clock.Now()) }

// password posts the password grant for client mobile.
func (m *mfaEnv) password(user, otpCode, scope string) response {
	m.t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {userPass}}
	if otpCode != "" {
		form.Set("otp", otpCode)
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	return m.post(PathToken, form, "mobile", mobileSecret)
}

// mfaToken runs the password grant without otp and returns the mfa_token.
func (m *mfaEnv) mfaToken(t testing.TB, user string) string {
	t.Helper()
	r := m.password(user, "", "")
	if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("mfa_token") == "" {
		t.Fatalf("password without otp: %d %s", r.status, r.raw)
	}
	return r.str("mfa_token")
}

func (m *mfaEnv) mfaOTP(clientID, sec, token, code, scope string) response {
	m.t.Helper()
	form := url.Values{"grant_type": {GrantMFAOTP}, "mfa_token": {token}, "otp": {code}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return m.post(PathToken, form, clientID, sec)
}

func wantTokens(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusOK || r.str("access_token") == "" || r.str("token_type") != "Bearer" {
		t.Fatalf("want tokens, got %d %s", r.status, r.raw)
	}
}

func wantInvalidGrant(t testing.TB, r response, desc string) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || r.str("access_token") != "" {
		t.Fatalf("want invalid_grant, got %d %s", r.status, r.raw)
	}
	if desc != "" && r.str("error_description") != desc {
		t.Fatalf("error_description = %q, want %q", r.str("error_description"), desc)
	}
}

func (m *mfaEnv) amr(t testing.TB, r response) []string {
	t.Helper()
	idt := r.str("id_token")
	if idt == "" {
		t.Fatalf("no id_token: %s", r.raw)
	}
	_, claims := m.verifyJWT(idt)
	var out []string
	for _, v := range claims["amr"].([]any) {
		out = append(out, v.(string))
	}
	return out
}

func TestPasswordGrantWithSecondFactor(t *testing.T) {
	forEachMFABackend(t, func(t *testing.T, m *mfaEnv) {
		t.Run("a TOTP user without otp gets 403 mfa_required with an mfa_token, no tokens, and the code pushed to the webhook", func(t *testing.T) {
			sec, _ := m.totpUser(t, "tina")
			r := m.password("tina", "", "")
			if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("mfa_token") == "" || r.str("error_description") == "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			if r.str("access_token") != "" || r.str("refresh_token") != "" {
				t.Fatalf("tokens in a 403: %s", r.raw)
			}
			if strings.Contains(r.str("mfa_token"), "tina") {
				t.Errorf("the mfa_token shows the user: %s", r.str("mfa_token"))
			}
			msg := m.gw.last(t, "tina")
			// The step may have turned since the push.
			now := m.clock.Now()
			if msg.Channel != "totp" || (msg.Token != totpAt(t, sec, now) && msg.Token != totpAt(t, sec, now.Add(-30*time.Second))) {
				t.Errorf("webhook got %+v, want the current TOTP code", msg)
			}
		})
		t.Run("the same request with a current TOTP code gets tokens, and the ID token says pwd otp mfa", func(t *testing.T) {
			sec, _ := m.totpUser(t, "theo")
			code := m.totpNow(t, sec)
			r := m.password("theo", code, "openid patient.read")
			wantTokens(t, r)
			if r.str("refresh_token") == "" {
				t.Errorf("no refresh token although the client's password settings turn them on: %s", r.raw)
			}
			if got := m.amr(t, r); !slices.Equal(got, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr = %v", got)
			}
			in := m.introspect(r.str("access_token"))
			if in.body["active"] != true || in.str("sub") != "theo" {
				t.Errorf("introspection = %s", in.raw)
			}
			t.Run("and the code cannot be used again", func(t *testing.T) {
				wantInvalidGrant(t, m.password("theo", code, ""), "invalid code")
			})
		})
		t.Run("a user without a second factor still gets an ID token that says pwd", func(t *testing.T) {
			m.putUser(resource.User{ID: "paula", Email: "paula@example.test"}, userPass)
			r := m.password("paula", "", "openid")
			wantTokens(t, r)
			if got := m.amr(t, r); !slices.Equal(got, []string{"pwd"}) {
				t.Errorf("amr = %v", got)
			}
		})
		t.Run("an SMS user's code goes out through the webhook and then works as otp", func(t *testing.T) {
			m.smsUser(t, "sam")
			r := m.password("sam", "", "")
			if r.status != http.StatusForbidden || r.str("mfa_token") == "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			msg := m.gw.last(t, "sam")
			if msg.Channel != "sms" || msg.Destination != "+14155550199" || len(msg.Token) != 6 {
				t.Fatalf("webhook got %+v", msg)
			}
			if strings.Contains(r.raw, msg.Token) {
				t.Fatal("the code is in the token endpoint's answer")
			}
			got := m.password("sam", msg.Token, "openid")
			wantTokens(t, got)
			if amr := m.amr(t, got); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr = %v", amr)
			}
			t.Run("once", func(t *testing.T) {
				wantInvalidGrant(t, m.password("sam", msg.Token, ""), "invalid code")
			})
		})
		t.Run("the SMS code sent by the password grant also completes its mfa_token", func(t *testing.T) {
			m.smsUser(t, "sasha")
			tok := m.mfaToken(t, "sasha")
			wantTokens(t, m.mfaOTP("mobile", mobileSecret, tok, m.gw.last(t, "sasha").Token, ""))
		})
		t.Run("a failing gateway still gets the client its mfa_token, never a 500", func(t *testing.T) {
			var hits atomic.Int32
			down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				http.Error(w, "gateway down", http.StatusBadGateway)
			}))
			defer down.Close()
			rec, err := resource.ToStoreAuthConfig(resource.AuthConfig{
				ID:        "broken",
				TwoFactor: &resource.AuthConfigTwoFactor{Webhook: &resource.Webhook{Endpoint: down.URL, Timeout: 2000}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := m.st.PutAuthConfig(context.Background(), rec, 0); err != nil {
				t.Fatal(err)
			}
			m.putClient(resource.Client{
				ID: "mobile-broken", GrantTypes: []string{"password"},
				AuthConfig: &resource.Reference{ID: "broken"},
			}, mobileSecret)
			m.smsUser(t, "stan")
			before := m.gw.count("stan")
			r := m.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"stan"}, "password": {userPass}}, "mobile-broken", mobileSecret)
			if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("mfa_token") == "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			if hits.Load() != 1 {
				t.Errorf("the client's gateway got %d requests, want the one attempt", hits.Load())
			}
			if m.gw.count("stan") != before {
				t.Fatal("the code went to the default AuthConfig's webhook instead of the client's")
			}
		})
		t.Run("a recovery code works with the password grant and with the mfa_token", func(t *testing.T) {
			_, codes := m.totpUser(t, "rita")
			wantTokens(t, m.password("rita", codes[0], ""))
			wantInvalidGrant(t, m.password("rita", codes[0], ""), "invalid code")
			wantTokens(t, m.mfaOTP("mobile", mobileSecret, m.mfaToken(t, "rita"), codes[1], ""))
		})
		t.Run("a wrong password with an otp is the plain password failure and costs no code attempt", func(t *testing.T) {
			sec, _ := m.totpUser(t, "walt")
			form := url.Values{"grant_type": {"password"}, "username": {"walt"}, "password": {"wrong"}, "otp": {m.totpNow(t, sec)}}
			r := m.post(PathToken, form, "mobile", mobileSecret)
			if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || r.str("error_description") == "invalid code" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			tf, err := m.st.GetTwoFactor(context.Background(), "walt")
			if err != nil || tf.Failures != 0 {
				t.Fatalf("failures = %d, %v", tf.Failures, err)
			}
		})
		t.Run("wrong codes count toward the lockout, through both paths, and then the right code is refused", func(t *testing.T) {
			sec, _ := m.totpUser(t, "lou")
			tok := m.mfaToken(t, "lou")
			for i := range twofactor.MaxAttempts {
				var r response
				if i%2 == 0 {
					r = m.password("lou", "000000", "")
				} else {
					r = m.mfaOTP("mobile", mobileSecret, tok, "000000", "")
				}
				wantInvalidGrant(t, r, "invalid code")
			}
			wantInvalidGrant(t, m.password("lou", m.totpNow(t, sec), ""), "invalid code")
			wantInvalidGrant(t, m.mfaOTP("mobile", mobileSecret, tok, m.totpNow(t, sec), ""), "invalid code")
			evs, _, err := m.st.ListAudit(context.Background(), store.AuditFilter{UserID: "lou", Type: audit.TwoFactorLockout}, store.Page{Count: 10, Page: 1})
			if err != nil || len(evs) != 1 {
				t.Fatalf("lockout events: %d, %v", len(evs), err)
			}
		})
		t.Run("a client that requires a second factor refuses a user without one, with nothing to continue with", func(t *testing.T) {
			m.putClient(resource.Client{
				ID: "strict-mobile", GrantTypes: []string{"password"},
				TwoFactor: &resource.ClientTwoFactor{Required: new(true)},
			}, mobileSecret)
			m.putUser(resource.User{ID: "nora", Email: "nora@example.test"}, userPass)
			r := m.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"nora"}, "password": {userPass}}, "strict-mobile", mobileSecret)
			if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("mfa_token") != "" || r.str("access_token") != "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("the otp is not stored with the tokens", func(t *testing.T) {
			sec, _ := m.totpUser(t, "olga")
			code := m.totpNow(t, sec)
			r := m.password("olga", code, "")
			wantTokens(t, r)
			rec, err := m.st.GetOAuthRequest(context.Background(), store.KindAccessToken, m.p.strategy.AccessTokenSignature(context.Background(), r.str("access_token")))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(rec.Form, code) || strings.Contains(string(rec.Session), code) {
				t.Fatalf("the code is stored: form %q", rec.Form)
			}
		})
	})
}

func TestMFAOTPGrant(t *testing.T) {
	forEachMFABackend(t, func(t *testing.T, m *mfaEnv) {
		t.Run("an mfa_token and a TOTP code get tokens with amr pwd otp mfa", func(t *testing.T) {
			sec, _ := m.totpUser(t, "ann")
			r := m.mfaOTP("mobile", mobileSecret, m.mfaToken(t, "ann"), m.totpNow(t, sec), "openid patient.read")
			wantTokens(t, r)
			if r.str("refresh_token") == "" || !strings.Contains(r.str("scope"), "patient.read") {
				t.Errorf("tokens: %s", r.raw)
			}
			if got := m.amr(t, r); !slices.Equal(got, []string{"pwd", "otp", "mfa"}) {
				t.Errorf("amr = %v", got)
			}
			in := m.introspect(r.str("access_token"))
			if in.body["active"] != true || in.str("sub") != "ann" || in.str("client_id") != "mobile" {
				t.Errorf("introspection = %s", in.raw)
			}
			t.Run("and the refresh token works like a password grant's", func(t *testing.T) {
				rr := m.refresh("mobile", mobileSecret, r.str("refresh_token"))
				if rr.status != http.StatusOK {
					t.Fatalf("refresh: %d %s", rr.status, rr.raw)
				}
				if exp, _ := rr.body["expires_in"].(float64); exp < 290 || exp > 300 {
					t.Errorf("expires_in = %v, want the password grant's 300", rr.body["expires_in"])
				}
			})
		})
		t.Run("a wrong code leaves the mfa_token usable", func(t *testing.T) {
			sec, _ := m.totpUser(t, "ben")
			tok := m.mfaToken(t, "ben")
			wantInvalidGrant(t, m.mfaOTP("mobile", mobileSecret, tok, "123456", ""), "invalid code")
			wantTokens(t, m.mfaOTP("mobile", mobileSecret, tok, m.totpNow(t, sec), ""))
		})
		t.Run("an mfa_token is spent by its success", func(t *testing.T) {
			sec, codes := m.totpUser(t, "cal")
			tok := m.mfaToken(t, "cal")
			wantTokens(t, m.mfaOTP("mobile", mobileSecret, tok, m.totpNow(t, sec), ""))
			wantInvalidGrant(t, m.mfaOTP("mobile", mobileSecret, tok, codes[0], ""), "invalid or expired mfa_token")
			// The refusal came before the code was looked at: it is still unused.
			wantTokens(t, m.password("cal", codes[0], ""))
		})
		t.Run("an mfa_token expires after five minutes", func(t *testing.T) {
			_, codes := m.totpUser(t, "dee")
			tok := m.mfaToken(t, "dee")
			m.clock.Advance(5*time.Minute + time.Second)
			r := m.mfaOTP("mobile", mobileSecret, tok, codes[0], "")
			m.clock.Advance(-5*time.Minute - time.Second)
			wantInvalidGrant(t, r, "invalid or expired mfa_token")
		})
		t.Run("another client's mfa_token is refused", func(t *testing.T) {
			_, codes := m.totpUser(t, "eve")
			tok := m.mfaToken(t, "eve")
			wantInvalidGrant(t, m.mfaOTP("mobile2", mobile2Secret, tok, codes[0], ""), "invalid or expired mfa_token")
			wantTokens(t, m.mfaOTP("mobile", mobileSecret, tok, codes[0], ""))
		})
		t.Run("a client without the password grant may not use it", func(t *testing.T) {
			_, codes := m.totpUser(t, "fay")
			r := m.mfaOTP("web", webSecret, m.mfaToken(t, "fay"), codes[0], "")
			if r.status != http.StatusBadRequest || r.str("error") != "unauthorized_client" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("the client must authenticate as for the password grant", func(t *testing.T) {
			_, codes := m.totpUser(t, "gil")
			r := m.mfaOTP("mobile", "wrong-secret", m.mfaToken(t, "gil"), codes[0], "")
			if r.status != http.StatusUnauthorized || r.str("error") != "invalid_client" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		for _, tc := range []struct{ name, token, code, want string }{
			{"a missing mfa_token is invalid_request", "", "123456", "invalid_request"},
			{"a missing otp is invalid_request", "x", "", "invalid_request"},
			{"a made-up mfa_token is invalid_grant", "bm90LWEtdG9rZW4", "123456", "invalid_grant"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := m.mfaOTP("mobile", mobileSecret, tc.token, tc.code, "")
				if r.status != http.StatusBadRequest || r.str("error") != tc.want {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
			})
		}
		t.Run("of twenty parallel completions with one valid code exactly one gets tokens", func(t *testing.T) {
			sec, _ := m.totpUser(t, "hal")
			tok := m.mfaToken(t, "hal")
			code := m.totpNow(t, sec)
			results := make([]response, 20)
			var wg sync.WaitGroup
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = m.mfaOTP("mobile", mobileSecret, tok, code, "")
				}()
			}
			wg.Wait()
			ok := 0
			for _, r := range results {
				switch {
				case r.status == http.StatusOK:
					ok++
				case r.status != http.StatusBadRequest || r.str("error") != "invalid_grant":
					t.Errorf("a loser got %d %s", r.status, r.raw)
				}
			}
			if ok != 1 {
				t.Fatalf("%d requests got tokens", ok)
			}
		})
		t.Run("discovery lists the grant", func(t *testing.T) {
			r := m.get(PathOpenIDConf, "")
			grants, _ := r.body["grant_types_supported"].([]any)
			if !slices.Contains(grants, any(GrantMFAOTP)) {
				t.Fatalf("grant_types_supported = %v", grants)
			}
		})
	})
}

func TestMFAOTPGrantWithoutSecondFactors(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	t.Run("the grant is unsupported and not advertised", func(t *testing.T) {
		r := e.post(PathToken, url.Values{"grant_type": {GrantMFAOTP}, "mfa_token": {"x"}, "otp": {"123456"}}, "mobile", mobileSecret)
		if r.status != http.StatusBadRequest || r.str("error") != "unsupported_grant_type" {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
		grants, _ := e.get(PathOpenIDConf, "").body["grant_types_supported"].([]any)
		if slices.Contains(grants, any(GrantMFAOTP)) {
			t.Fatalf("grant_types_supported = %v", grants)
		}
	})
	t.Run("a user with a second factor gets mfa_required without an mfa_token", func(t *testing.T) {
		r := e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob password 123"}}, "mobile", mobileSecret)
		if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("mfa_token") != "" {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
	})
}

func TestIssueTokensAndVerifyUserToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		g := Grant{Subject: "alice", AuthTime: time.Now().Add(-time.Minute), AMR: []string{"pwd", "otp", "mfa"}, Scopes: []string{"openid", "patient.read", "not-allowed"}}

		t.Run("IssueTokens answers like the token endpoint, with tokens that introspect active", func(t *testing.T) {
			out, err := e.p.IssueTokens(ctx, "mobile", g)
			if err != nil {
				t.Fatal(err)
			}
			at, _ := out["access_token"].(string)
			rt, _ := out["refresh_token"].(string)
			idt, _ := out["id_token"].(string)
			if at == "" || rt == "" || idt == "" || out["token_type"] != "Bearer" {
				t.Fatalf("tokens: %v", out)
			}
			if s, _ := out["scope"].(string); strings.Contains(s, "not-allowed") || !strings.Contains(s, "patient.read") {
				t.Errorf("scope = %q", s)
			}
			in := e.introspect(at)
			if in.body["active"] != true || in.str("sub") != "alice" || in.str("client_id") != "mobile" {
				t.Errorf("introspection = %s", in.raw)
			}
			_, claims := e.verifyJWT(idt)
			if amr, _ := json.Marshal(claims["amr"]); string(amr) != `["pwd","otp","mfa"]` {
				t.Errorf("amr = %s", amr)
			}
			ut, err := e.p.VerifyUserToken(ctx, at)
			if err != nil {
				t.Fatalf("VerifyUserToken: %v", err)
			}
			if ut.Subject != "alice" || ut.ClientID != "mobile" || !slices.Equal(ut.AMR, g.AMR) ||
				!slices.Contains(ut.Scopes, "patient.read") || !ut.AuthTime.Equal(g.AuthTime.UTC().Truncate(time.Second)) {
				t.Errorf("user token = %+v", ut)
			}
			if rr := e.refresh("mobile", mobileSecret, rt); rr.status != http.StatusOK {
				t.Errorf("refresh = %d %s", rr.status, rr.raw)
			}
			// The rotation replaced the access token, as for any refresh.
			if _, err := e.p.VerifyUserToken(ctx, at); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("replaced access token: %v", err)
			}
		})
		t.Run("IssueTokens refuses unknown clients, clients without the password grant and inactive users", func(t *testing.T) {
			if _, err := e.p.IssueTokens(ctx, "nope", g); !errors.Is(err, ErrUnknownClient) {
				t.Errorf("unknown client: %v", err)
			}
			if _, err := e.p.IssueTokens(ctx, "web", g); !errors.Is(err, ErrGrantNotAllowed) {
				t.Errorf("code-only client: %v", err)
			}
			e.putUser(resource.User{ID: "ivy", Email: "ivy@example.test", Inactive: true}, "")
			if _, err := e.p.IssueTokens(ctx, "mobile", Grant{Subject: "ivy"}); !errors.Is(err, ErrInactiveUser) {
				t.Errorf("inactive user: %v", err)
			}
			if _, err := e.p.IssueTokens(ctx, "mobile", Grant{Subject: "ghost"}); !errors.Is(err, ErrInactiveUser) {
				t.Errorf("missing user: %v", err)
			}
		})
		t.Run("VerifyUserToken accepts a code-flow user token", func(t *testing.T) {
			tok := e.webTokens("openid")
			ut, err := e.p.VerifyUserToken(ctx, tok.str("access_token"))
			if err != nil || ut.Subject != "alice" || ut.ClientID != "web" {
				t.Fatalf("got %+v, %v", ut, err)
			}
		})
		t.Run("VerifyUserToken refuses client_credentials, refresh, revoked, unknown tokens and disabled users", func(t *testing.T) {
			cc := e.clientCredentials("svc", svcSecret, "patient.read")
			if _, err := e.p.VerifyUserToken(ctx, cc.str("access_token")); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("client_credentials token: %v", err)
			}
			out, err := e.p.IssueTokens(ctx, "mobile", g)
			if err != nil {
				t.Fatal(err)
			}
			rt := out["refresh_token"].(string)
			if _, err := e.p.VerifyUserToken(ctx, rt); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("refresh token: %v", err)
			}
			at := out["access_token"].(string)
			if r := e.post(PathRevoke, url.Values{"token": {at}}, "mobile", mobileSecret); r.status != http.StatusOK {
				t.Fatalf("revoke: %d %s", r.status, r.raw)
			}
			if _, err := e.p.VerifyUserToken(ctx, at); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("revoked token: %v", err)
			}
			for _, bad := range []string{"", "garbage", "a.b.c"} {
				if _, err := e.p.VerifyUserToken(ctx, bad); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("%q: %v", bad, err)
				}
			}
			out, err = e.p.IssueTokens(ctx, "mobile", g)
			if err != nil {
				t.Fatal(err)
			}
			e.putUser(resource.User{ID: "alice", Email: "alice@example.test", Inactive: true}, "")
			defer e.putUser(resource.User{ID: "alice", Email: "alice@example.test"}, "")
			if _, err := e.p.VerifyUserToken(ctx, out["access_token"].(string)); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("disabled user: %v", err)
			}
		})
	})
}
