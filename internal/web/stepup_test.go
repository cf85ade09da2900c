package web_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/web"
)

// putBank registers a first-party client that requires mfa.
func (e *env) putBank() {
	e.putClient(resource.Client{
		ID: "bank", Secret: webappSecret, FirstParty: true, Name: "Bank",
		GrantTypes: []string{"code"}, Scope: []string{"openid", "profile"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{webappURI}, SecretRequired: ptr(true), RequiredACR: web.ACRMFA,
		}},
	})
}

func TestAStepUpMadeForARequestKeepsItsPromptLoginSatisfied(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.putBank()
		b := e.browser()
		q := authorizeQuery("bank", "prompt", "login")
		p := b.get("/auth/authorize?" + q.Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		// The password POST answers the parked request itself.
		p = b.login(b.get(p.location), "alice", alicePassword)
		if p.location != "/auth/login/two-factor" {
			t.Fatalf("after the password the request went to %q (status %d), want the enrolment", p.location, p.status)
		}
		p = b.get(p.location)
		secret := find(t, secretRe, p, "#totp-secret")
		p = b.post("/auth/login/two-factor", url.Values{"_csrf": {csrfOf(t, p)}, "code": {e.totpCode(secret)}})
		cont := find(t, hrefRe, p, "the continue link")
		p = b.get(cont)
		params := redirectParams(t, p, webappURI+"?")
		if params.Get("code") == "" {
			t.Fatalf("prompt=login with a step-up looped or failed: %v", params)
		}
	})
}

func TestAStepUpLeftTooLongStartsAgain(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.putBank()
		b := e.browser()
		b.signIn()
		q := authorizeQuery("bank")
		p := b.get("/auth/authorize?" + q.Encode())
		if p.location != "/auth/login/two-factor" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		e.clock.Advance(web.ReauthWindow + time.Minute)
		p = b.get("/auth/login/two-factor")
		if !strings.HasPrefix(p.location, "/auth/authorize?") {
			t.Fatalf("an old step-up page: status %d location %q", p.status, p.location)
		}
		p = b.get(p.location)
		if p.location != "/auth/login" {
			t.Fatalf("the request again: status %d location %q, want the password first", p.status, p.location)
		}
		t.Run("with prompt=none the client hears unmet_authentication_requirements", func(t *testing.T) {
			p := b.get("/auth/authorize?" + authorizeQuery("bank", "prompt", "none").Encode())
			if got := redirectParams(t, p, webappURI+"?").Get("error"); got != "unmet_authentication_requirements" {
				t.Fatalf("error %q", got)
			}
		})
	})
}
