package bench

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// Protocol endpoints (DESIGN.md §5).
const (
	pathAuthorize  = "/auth/authorize"
	pathToken      = "/auth/token"
	pathIntrospect = "/auth/introspect"
	pathJWKS       = "/.well-known/jwks.json"
	pathDiscovery  = "/.well-known/openid-configuration"
)

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`
}

func isJWT(tok string) bool { return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "ey") }

// post sends a form to a protocol endpoint with the client's Basic
// credentials (form-urlencoded inside Basic, RFC 6749 §2.3.1).
func (r *run) post(ctx context.Context, path, clientID string, form url.Values) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(r.st.Clients[clientID]))
	return do(r.plain, req, "POST "+path)
}

// token asks the token endpoint for tokens and checks the answer.
func (r *run) token(ctx context.Context, clientID string, form url.Values) (tokenResponse, error) {
	resp, err := r.post(ctx, pathToken, clientID, form)
	if err != nil {
		return tokenResponse{}, err
	}
	if resp.status != http.StatusOK {
		return tokenResponse{}, httpFailure(resp.status, "token "+form.Get("grant_type"), resp.body)
	}
	var t tokenResponse
	if err := json.Unmarshal(resp.body, &t); err != nil {
		return tokenResponse{}, assertFailure("token response is not JSON: %v", err)
	}
	if t.AccessToken == "" || !strings.EqualFold(t.TokenType, "bearer") {
		return tokenResponse{}, assertFailure("token response without a bearer access_token: %s", snippet(resp.body))
	}
	return t, nil
}

// signIn runs the browser flow with a fresh cookie jar: authorize → login
// form → (second factor) → redirect with a code → code exchange (with
// PKCE). code, when not nil, is asked for the TOTP code just before the
// second step's POST.
func (r *run) signIn(ctx context.Context, clientID, scope, login string, code func() (string, error)) (tokenResponse, error) {
	br := newBrowser(r.cfg.URL, r.host, r.tr, r.cfg.RequestTimeout)
	verifier := base64.RawURLEncoding.EncodeToString(secret.RandomBytes(32))
	sum := sha256.Sum256([]byte(verifier))
	state := secret.RandomToken(12)
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {state},
		"nonce":                 {secret.RandomToken(12)},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	p, err := br.get(ctx, pathAuthorize+"?"+q.Encode(), "authorize")
	if err != nil {
		return tokenResponse{}, err
	}
	if err := expectPage(p, pathLogin, "authorize"); err != nil {
		return tokenResponse{}, err
	}
	csrf, err := csrfOf(p, "login page")
	if err != nil {
		return tokenResponse{}, err
	}
	p, err = br.post(ctx, pathLogin, url.Values{"username": {login}, "password": {r.st.Password}, "_csrf": {csrf}}, "login")
	if err != nil {
		return tokenResponse{}, err
	}
	if code != nil {
		if err := expectPage(p, pathLoginTwoFactor, "password step"); err != nil {
			return tokenResponse{}, err
		}
		if csrf, err = csrfOf(p, "two-factor page"); err != nil {
			return tokenResponse{}, err
		}
		c, err := code()
		if err != nil {
			return tokenResponse{}, err
		}
		p, err = br.post(ctx, pathLoginTwoFactor, url.Values{"code": {c}, "_csrf": {csrf}}, "two-factor")
		if err != nil {
			return tokenResponse{}, err
		}
	}
	if p.status < 300 || p.status > 399 || !strings.HasPrefix(p.location, redirectURI) {
		if p.status >= 400 {
			return tokenResponse{}, httpFailure(p.status, "sign-in ended at "+p.url.Path, p.body)
		}
		return tokenResponse{}, assertFailure("sign-in did not return to the client; ended at %s (%d): %s", p.url.Path, p.status, snippet(p.body))
	}
	back, err := url.Parse(p.location)
	if err != nil {
		return tokenResponse{}, assertFailure("unreadable redirect: %v", err)
	}
	bq := back.Query()
	if e := bq.Get("error"); e != "" {
		return tokenResponse{}, assertFailure("authorization error %s: %s", e, bq.Get("error_description"))
	}
	if bq.Get("state") != state || bq.Get("code") == "" {
		return tokenResponse{}, assertFailure("the redirect lacks the code or the state")
	}
	t, err := r.token(ctx, clientID, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {bq.Get("code")},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
	if err != nil {
		return tokenResponse{}, err
	}
	if strings.Contains(scope, "openid") && t.IDToken == "" {
		return tokenResponse{}, assertFailure("code exchange with scope openid returned no id_token")
	}
	return t, nil
}

// opFor returns the unit of work of a scenario. Setup the scenario needs
// (tokens to refresh or introspect) is done here, before the clock runs.
func (r *run) opFor(ctx context.Context, name string) (op, error) {
	switch name {
	case ScenarioTokenCCJWT, ScenarioTokenCCOpaque:
		client, wantJWT := r.jwtClient, true
		if name == ScenarioTokenCCOpaque {
			client, wantJWT = r.opaqueClient, false
		}
		form := url.Values{"grant_type": {"client_credentials"}}
		return func(ctx context.Context, _ int, _ time.Time) (time.Duration, error) {
			start := time.Now()
			t, err := r.token(ctx, client, form)
			d := time.Since(start)
			if err == nil && isJWT(t.AccessToken) != wantJWT {
				err = assertFailure("access token format: JWT=%v, want JWT=%v", isJWT(t.AccessToken), wantJWT)
			}
			return d, err
		}, nil

	case ScenarioLogin:
		if r.pool == nil {
			return nil, fmt.Errorf("no TOTP users")
		}
		return func(ctx context.Context, _ int, deadline time.Time) (time.Duration, error) {
			u, step, err := r.pool.acquire(ctx, deadline)
			if err != nil {
				return 0, err
			}
			defer r.pool.release(u, step)
			start := time.Now()
			_, err = r.signIn(ctx, r.webClient, "openid profile email", u.login, func() (string, error) {
				return totpCode(u.st.Secret, step)
			})
			return time.Since(start), err
		}, nil

	case ScenarioLoginPassword:
		return func(ctx context.Context, _ int, _ time.Time) (time.Duration, error) {
			login := emailOf(r.passwordUserID(rand.IntN(r.cfg.Users)))
			start := time.Now()
			_, err := r.signIn(ctx, r.webClient, "openid profile email", login, nil)
			return time.Since(start), err
		}, nil

	case ScenarioRefresh:
		// One rotating refresh-token chain per worker, each from its own
		// login (not timed). A broken chain is replaced the same way.
		chains := make([]string, r.cfg.Concurrency)
		newChain := func(ctx context.Context) (string, error) {
			login := emailOf(r.passwordUserID(rand.IntN(r.cfg.Users)))
			t, err := r.signIn(ctx, r.opaqueClient, "offline_access", login, nil)
			if err != nil {
				return "", fmt.Errorf("sign in for a refresh token: %w", err)
			}
			if t.RefreshToken == "" {
				return "", fmt.Errorf("sign in with offline_access returned no refresh token")
			}
			return t.RefreshToken, nil
		}
		err := r.parallel(ctx, len(chains), r.cfg.SeedConcurrency, "", func(ctx context.Context, i int) error {
			var err error
			chains[i], err = newChain(ctx)
			return err
		})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, w int, _ time.Time) (time.Duration, error) {
			if chains[w] == "" {
				var err error
				if chains[w], err = newChain(ctx); err != nil {
					return 0, err
				}
			}
			start := time.Now()
			t, err := r.token(ctx, r.opaqueClient, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {chains[w]}})
			d := time.Since(start)
			switch {
			case err != nil:
				chains[w] = ""
			case t.RefreshToken == "" || t.RefreshToken == chains[w]:
				chains[w] = ""
				err = assertFailure("refresh did not rotate the refresh token")
			default:
				chains[w] = t.RefreshToken
			}
			return d, err
		}, nil

	case ScenarioIntrospect:
		tokens := make([]string, 4*r.cfg.Concurrency)
		err := r.parallel(ctx, len(tokens), r.cfg.SeedConcurrency, "", func(ctx context.Context, i int) error {
			t, err := r.token(ctx, r.opaqueClient, url.Values{"grant_type": {"client_credentials"}})
			tokens[i] = t.AccessToken
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("opaque tokens to introspect: %w", err)
		}
		return func(ctx context.Context, w int, _ time.Time) (time.Duration, error) {
			start := time.Now()
			resp, err := r.post(ctx, pathIntrospect, r.opaqueClient, url.Values{"token": {tokens[rand.IntN(len(tokens))]}})
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			if resp.status != http.StatusOK {
				return d, httpFailure(resp.status, "introspect", resp.body)
			}
			var out struct {
				Active bool `json:"active"`
			}
			if err := json.Unmarshal(resp.body, &out); err != nil || !out.Active {
				return d, assertFailure("introspection of a fresh token: %s", snippet(resp.body))
			}
			return d, nil
		}, nil

	case ScenarioJWKS, ScenarioDiscovery:
		path, field := pathJWKS, `"keys"`
		if name == ScenarioDiscovery {
			path, field = pathDiscovery, `"issuer"`
		}
		return func(ctx context.Context, _ int, _ time.Time) (time.Duration, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+path, nil)
			if err != nil {
				return 0, err
			}
			start := time.Now()
			resp, err := do(r.plain, req, "GET "+path)
			d := time.Since(start)
			if err != nil {
				return d, err
			}
			if resp.status != http.StatusOK {
				return d, httpFailure(resp.status, "GET "+path, resp.body)
			}
			if !strings.Contains(string(resp.body), field) {
				return d, assertFailure("GET %s lacks %s", path, field)
			}
			return d, nil
		}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}
