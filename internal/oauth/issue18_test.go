package oauth

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// burst sends n requests at once and counts the answers by status.
func burst(n int, send func(i int) response) map[int]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	count := map[int]int{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := send(i)
			mu.Lock()
			count[r.status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return count
}

func TestClientSecretGuessingIsThrottledAndAudited(t *testing.T) {
	limit := account.ClientSecretThrottle.PerAddress
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.Open(t))
			// The real client asked a token before the attack: its secret
			// is remembered by this process and keeps working.
			if r := e.clientCredentials("svc", svcSecret, "patient.read"); r.status != http.StatusOK {
				t.Fatalf("first token: %d %s", r.status, r.raw)
			}
			t.Run("of a concurrent burst of wrong secrets only the address's limit is checked, the rest wait", func(t *testing.T) {
				got := burst(limit+20, func(i int) response { return e.clientCredentials("svc", fmt.Sprint("guess-", i), "") })
				if got[http.StatusUnauthorized] != limit || got[http.StatusTooManyRequests] != 20 {
					t.Fatalf("answers %v; want %d × 401 and 20 × 429", got, limit)
				}
			})
			t.Run("a throttled answer says invalid_client with Retry-After", func(t *testing.T) {
				r := e.clientCredentials("svc", "one-more-guess", "")
				if r.status != http.StatusTooManyRequests || r.str("error") != "invalid_client" {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
			})
			t.Run("the real client's remembered secret still works", func(t *testing.T) {
				if r := e.clientCredentials("svc", svcSecret, "patient.read"); r.status != http.StatusOK {
					t.Fatalf("%d %s", r.status, r.raw)
				}
			})
			t.Run("every checked failure is audited without the secret", func(t *testing.T) {
				evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{Type: audit.LoginFailure}, store.Page{Count: 1000, Page: 1})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, ev := range evs {
					if ev.ClientID == "svc" && ev.Detail["surface"] == "client" && ev.Detail["reason"] == "wrong_secret" {
						n++
					}
				}
				if n != limit {
					t.Fatalf("%d wrong_secret events, want %d", n, limit)
				}
			})
			t.Run("after the window the address may try again", func(t *testing.T) {
				e.clock.Advance(account.ClientSecretThrottle.Window)
				if r := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); r.status != http.StatusOK {
					t.Fatalf("%d %s", r.status, r.raw)
				}
			})
		})
	}
}

func TestPasswordGrantThrottleSaysSo(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	pw := func(p string) response {
		return e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {p}, "scope": {"patient.read"}}, "mobile", mobileSecret)
	}
	got := burst(account.DefaultThrottle.PerAccount+5, func(i int) response { return pw(fmt.Sprint("wrong-", i)) })
	if got[http.StatusBadRequest] != account.DefaultThrottle.PerAccount || got[http.StatusTooManyRequests] != 5 {
		t.Fatalf("answers %v; want %d × 400 and 5 × 429", got, account.DefaultThrottle.PerAccount)
	}
	r := pw(alicePass)
	if r.status != http.StatusTooManyRequests || r.str("error") != "invalid_grant" || r.header.Get("Retry-After") == "" {
		t.Fatalf("the right password from the throttled address: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
	}
}

func TestConfidentialRefreshNeedsTheSecret(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	no := false
	e.putClient(resource.Client{
		ID: "mixed", FirstParty: true,
		GrantTypes: []string{"code", "password", "refresh_token"},
		Scope:      []string{"patient.read"},
		Auth: &resource.ClientAuth{
			AuthorizationCode: &resource.GrantSettings{RedirectURI: resource.StringList{webRedirect}, RefreshToken: true},
			Password:          &resource.GrantSettings{RefreshToken: true, SecretRequired: &no},
		},
	}, webSecret)
	v := verifier(64)
	res := e.exchange("mixed", webSecret, e.code(authorizeQuery("mixed", webRedirect, challenge(v), "patient.read")), webRedirect, v)
	if res.status != http.StatusOK || res.str("refresh_token") == "" {
		t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	t.Run("a code-grant refresh token without the secret is refused", func(t *testing.T) {
		if r := e.refresh("mixed", "", res.str("refresh_token")); r.status != http.StatusUnauthorized || r.str("error") != "invalid_client" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("with the secret it refreshes", func(t *testing.T) {
		if r := e.refresh("mixed", webSecret, res.str("refresh_token")); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("a refresh token of the public password grant refreshes without it", func(t *testing.T) {
		p := e.post(PathToken, url.Values{"grant_type": {"password"}, "client_id": {"mixed"}, "username": {"alice"}, "password": {alicePass}, "scope": {"patient.read"}}, "", "")
		if p.status != http.StatusOK || p.str("refresh_token") == "" {
			t.Fatalf("password grant: %d %s", p.status, p.raw)
		}
		if r := e.refresh("mixed", "", p.str("refresh_token")); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func TestUserinfoRefusesTokensInTheURL(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	at := e.webTokens("openid").str("access_token")
	if r := e.get(PathUserinfo+"?access_token="+url.QueryEscape(at), ""); r.status != http.StatusBadRequest || r.str("error") != "invalid_request" {
		t.Fatalf("token in the query: %d %s", r.status, r.raw)
	}
	if r := e.get(PathUserinfo, at); r.status != http.StatusOK || r.str("sub") != "alice" {
		t.Fatalf("token in the header: %d %s", r.status, r.raw)
	}
}

// TestAColdBurstOfTheRightSecretIsNotThrottled: a freshly started process
// meets 200 token requests of one service at once, all with its right
// secret, none remembered yet. Before, each reserved a place on the
// per-address limit (50) on arrival and then waited for the one running
// check, so most were answered 429 "too many failed client
// authentications" (seen in gatehouse-bench at c=1024). Now only the check
// that hashes reserves, once it holds a hashing slot.
func TestAColdBurstOfTheRightSecretIsNotThrottled(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.Open(t))
			got := burst(200, func(int) response { return e.clientCredentials("svc", svcSecret, "patient.read") })
			if got[http.StatusOK] != 200 {
				t.Fatalf("answers %v; want 200 × 200", got)
			}
		})
	}
}
