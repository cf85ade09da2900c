package server

// Helpers of the issue-5 end-to-end tests: a JSON client for the sign-in
// and MFA API, the token endpoint with client authentication, and an SMS
// and e-mail gateway (a local webhook receiver) whose captured codes the
// tests type in, as a user reading a text message would.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// apiResp is a JSON answer of the API or the token endpoint.
type apiResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r apiResp) str(k string) string { s, _ := r.body[k].(string); return s }

// list returns the array at key k as objects.
func (r apiResp) list(t *testing.T, k string) []map[string]any {
	t.Helper()
	raw, ok := r.body[k].([]any)
	if !ok {
		t.Fatalf("%q is not a list in %s", k, r.raw)
	}
	out := make([]map[string]any, 0, len(raw))
	for _, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%q holds a non-object in %s", k, r.raw)
		}
		out = append(out, m)
	}
	return out
}

// strings returns the array of strings at key k.
func (r apiResp) strings(t *testing.T, k string) []string {
	t.Helper()
	raw, ok := r.body[k].([]any)
	if !ok {
		t.Fatalf("%q is not a list in %s", k, r.raw)
	}
	out := make([]string, 0, len(raw))
	for _, v := range raw {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("%q holds a non-string in %s", k, r.raw)
		}
		out = append(out, s)
	}
	return out
}

func doJSON(t *testing.T, req *http.Request) apiResp {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := apiResp{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: the answer is not a JSON object (%d): %s", req.Method, req.URL.Path, resp.StatusCode, b)
		}
	}
	return r
}

// callAPI sends a JSON body (nil: none) with an optional Bearer token.
func callAPI(t *testing.T, app *testApp, method, path, bearer string, body map[string]any) apiResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, app.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return doJSON(t, req)
}

// tokenRequest posts form to the token endpoint with HTTP Basic client
// authentication.
func tokenRequest(t *testing.T, app *testApp, clientID, secret string, form url.Values) apiResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, app.URL+"/auth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	return doJSON(t, req)
}

// wantStatus fails unless r has the status (and, when given, the error).
func wantStatus(t *testing.T, r apiResp, status int, errCode string) {
	t.Helper()
	if r.status != status || (errCode != "" && r.str("error") != errCode) {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, errCode)
	}
}

// wantTokens fails unless r is a token answer.
func wantTokens(t *testing.T, r apiResp) {
	t.Helper()
	if r.status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("want tokens, got %d %s", r.status, r.raw)
	}
}

// idTokenAMR verifies the answer's ID token against the JWKS and returns
// its amr.
func idTokenAMR(t *testing.T, app *testApp, r apiResp) []string {
	t.Helper()
	raw := r.str("id_token")
	if raw == "" {
		t.Fatalf("no id_token in %s", r.raw)
	}
	var id idClaims
	verifyJWT(t, app, raw, &id)
	return id.AMR
}

// gateway is an SMS and e-mail gateway: the AuthConfig's webhook endpoint,
// which a real deployment would turn into text messages and e-mails.
type gateway struct{ *hookReceiver }

// mark is how many messages arrived so far; codes after it are new.
func (g gateway) mark() int { return len(g.deliveries()) }

// since decodes the messages after mark n.
func (g gateway) since(t *testing.T, n int) []codePayload {
	t.Helper()
	var out []codePayload
	for _, d := range g.deliveries()[n:] {
		var p codePayload
		if err := json.Unmarshal(d.body, &p); err != nil {
			t.Fatalf("gateway message %s: %v", d.body, err)
		}
		out = append(out, p)
	}
	return out
}

// codeTo is the newest code delivered to dest after mark n.
func (g gateway) codeTo(t *testing.T, n int, dest string) string {
	t.Helper()
	msgs := g.since(t, n)
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Destination == dest {
			if len(msgs[i].Token) != 6 {
				t.Fatalf("the code to %s is %q, want six digits", dest, msgs[i].Token)
			}
			return msgs[i].Token
		}
	}
	t.Fatalf("the gateway got no code for %s; it got %+v", dest, msgs)
	return ""
}
