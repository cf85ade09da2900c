package resource

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// The Aidbox documentation's examples, exactly as written there.
const (
	aidboxAuthConfigYAML = `twoFactor:
  issuerName: my-app
  validPastTokensCount: 3
  webhook: {endpoint: https://my-app.com, timeout: 500}
`
	aidboxClientYAML = `secret: verysecret-0123456789
first_party: true
grant_types: [code]
auth:
  authorization_code:
    redirect_uri: 'http://localhost:3001'
    access_token_expiration: 360
    token_format: jwt
    secret_required: true
    refresh_token: true
`
	aidboxUserYAML = `id: my-user
password: password
`
)

func TestDecodeAcceptsTheAidboxExamples(t *testing.T) {
	a, err := DecodeAuthConfig([]byte(aidboxAuthConfigYAML), FormatYAML)
	if err != nil {
		t.Fatalf("AuthConfig: %v", err)
	}
	if a.Issuer() != "my-app" || a.PastTokens() != 3 || a.Webhook().Endpoint != "https://my-app.com" || a.Webhook().Timeout != 500 {
		t.Fatalf("AuthConfig decoded as %+v / %+v", a.TwoFactor, a.Webhook())
	}

	c, err := DecodeClient([]byte(aidboxClientYAML), FormatYAML)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	g := c.Grant(GrantAuthorizationCode)
	if c.Secret != "verysecret-0123456789" || !c.FirstParty || !c.HasGrant("authorization_code") ||
		c.GrantTypes[0] != "code" || c.EffectiveGrantTypes()[0] != GrantAuthorizationCode || g.AccessTokenExpiration != 360 || g.TokenFormat != "jwt" ||
		!*g.SecretRequired || !g.RefreshToken || c.RedirectURIs()[0] != "http://localhost:3001" {
		t.Fatalf("Client decoded as %+v, grant %+v", c, g)
	}
	if !c.HasGrant(GrantRefreshToken) {
		t.Fatal("refresh_token: true on the grant should enable the refresh_token grant")
	}

	u, err := DecodeUser([]byte(aidboxUserYAML), FormatYAML)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if u.ID != "my-user" || u.Password != "password" {
		t.Fatalf("User decoded as %+v", u)
	}
}

func TestDecodeJSONAndYAMLAgree(t *testing.T) {
	j := `{"secret":"s","grant_types":["code","password"],"auth":{"authorization_code":{"redirect_uri":["https://a.example/cb","https://b.example/cb"]}},"scope":["openid"]}`
	y := "secret: s\ngrant_types: [code, password]\nauth:\n  authorization_code:\n    redirect_uri:\n      - https://a.example/cb\n      - https://b.example/cb\nscope: [openid]\n"
	cj, err := DecodeClient([]byte(j), FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	cy, err := DecodeClient([]byte(y), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	bj, _ := json.Marshal(cj)
	by, _ := json.Marshal(cy)
	if string(bj) != string(by) {
		t.Fatalf("JSON and YAML decode differently:\n%s\n%s", bj, by)
	}
	if got := cj.EffectiveGrantTypes(); len(got) != 2 || got[0] != "authorization_code" || got[1] != "password" {
		t.Fatalf("grant types = %v", got)
	}
}

func TestStringListKeepsTheShapeItWasWrittenIn(t *testing.T) {
	tests := []struct {
		name, in, out string
	}{
		{"a single string stays a string", `"https://a/cb"`, `"https://a/cb"`},
		{"a list of two stays a list", `["https://a/cb","https://b/cb"]`, `["https://a/cb","https://b/cb"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l StringList
			if err := json.Unmarshal([]byte(tc.in), &l); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(l)
			if string(b) != tc.out {
				t.Fatalf("round trip = %s, want %s", b, tc.out)
			}
		})
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	tests := []struct {
		name     string
		format   Format
		body     string
		into     string // User, Client, AuthConfig
		syntax   bool   // a *SyntaxError (400) rather than a *ValidationError (422)
		wantPath string
	}{
		{"an unknown nested field is named by its path", FormatYAML,
			"twoFactor:\n  webhook: {endpoint: https://x.example, timeot: 5}\n", TypeAuthConfig, false, "twoFactor.webhook.timeot"},
		{"an unknown top-level field is named", FormatJSON, `{"id":"a","passwrd":"x"}`, TypeUser, false, "passwrd"},
		{"a key differing only in case is unknown", FormatJSON, `{"Email":"a@b.example"}`, TypeUser, false, "Email"},
		{"the never-serialised secret hash cannot be written", FormatJSON, `{"SecretHash":"$argon2id$..."}`, TypeClient, false, "SecretHash"},
		{"a string where a number belongs is a wrong type", FormatJSON,
			`{"twoFactor":{"webhook":{"endpoint":"https://x.example","timeout":"500"}}}`, TypeAuthConfig, false, "twoFactor.webhook.timeout"},
		{"a fraction where an integer belongs is a wrong type", FormatJSON,
			`{"auth":{"password":{"access_token_expiration":1.5}}}`, TypeClient, false, "auth.password.access_token_expiration"},
		{"an integer too large for the field is refused", FormatJSON,
			`{"auth":{"password":{"access_token_expiration":99999999999999999999}}}`, TypeClient, false, "auth.password.access_token_expiration"},
		{"a number in a list of strings is named by index", FormatYAML, "grant_types: [code, 7]\n", TypeClient, false, "grant_types[1]"},
		{"an object where a string list belongs is refused", FormatJSON,
			`{"auth":{"authorization_code":{"redirect_uri":{"a":1}}}}`, TypeClient, false, "auth.authorization_code.redirect_uri"},
		{"null inside a list is refused", FormatJSON, `{"scope":[null]}`, TypeClient, false, "scope[0]"},
		{"a YAML yes is not a boolean", FormatYAML, "first_party: yes\n", TypeClient, false, "first_party"},
		{"a bad date in meta is refused", FormatJSON, `{"meta":{"lastUpdated":"yesterday"}}`, TypeUser, false, "meta.lastUpdated"},
		{"a YAML alias is refused", FormatYAML, "a: &x my-user\nid: *x\n", TypeUser, true, "id"},
		{"a YAML merge key is refused", FormatYAML, "name: {<<: {givenName: a}}\n", TypeUser, true, "name.<<"},
		{"a duplicate JSON key is refused", FormatJSON, `{"id":"a","id":"b"}`, TypeUser, true, "id"},
		{"a duplicate YAML key is refused", FormatYAML, "id: a\nid: b\n", TypeUser, true, "id"},
		{"invalid JSON is unparseable", FormatJSON, `{"id":`, TypeUser, true, ""},
		{"trailing data after JSON is unparseable", FormatJSON, `{"id":"a"} {}`, TypeUser, true, ""},
		{"invalid YAML is unparseable", FormatYAML, "id: [a\n", TypeUser, true, ""},
		{"an empty body is unparseable", FormatJSON, "  ", TypeUser, true, ""},
		{"an empty YAML body is unparseable", FormatYAML, "# nothing\n", TypeUser, true, ""},
		{"a list at the top level is unparseable", FormatJSON, `[1]`, TypeUser, true, ""},
		{"a scalar YAML document is unparseable", FormatYAML, "hello\n", TypeUser, true, ""},
		{"two YAML documents in one body are refused", FormatYAML, "id: a\n---\nid: b\n", TypeUser, true, ""},
		{"a custom YAML tag is refused", FormatYAML, "id: !secret abc\n", TypeUser, true, "id"},
		{"an infinite YAML float is refused", FormatYAML, "auth: {password: {access_token_expiration: .inf}}\n", TypeClient, true, "auth.password.access_token_expiration"},
		{"absurd nesting is refused before it is walked", FormatJSON, strings.Repeat("[", 100) + strings.Repeat("]", 100), TypeUser, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := Parse([]byte(tc.body), tc.format)
			if err == nil {
				_, err = DecodeAs(tc.into, tree)
			}
			if err == nil {
				t.Fatal("decoded without error")
			}
			var se *SyntaxError
			var ve *ValidationError
			switch {
			case tc.syntax && errors.As(err, &se):
				if tc.wantPath != "" && se.Path != tc.wantPath {
					t.Fatalf("syntax error path = %q, want %q (%v)", se.Path, tc.wantPath, err)
				}
			case !tc.syntax && errors.As(err, &ve):
				if !hasPath(ve, tc.wantPath) {
					t.Fatalf("problems %+v do not name %q", ve.Problems, tc.wantPath)
				}
			default:
				t.Fatalf("error %T %v; want syntax=%v", err, err, tc.syntax)
			}
		})
	}
}

func TestDecodeRefusesAYAMLAliasBombQuickly(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 30; i++ {
		b.WriteString("a")
		b.WriteString(strconv.Itoa(i))
		b.WriteString(": &a")
		b.WriteString(strconv.Itoa(i))
		b.WriteString(" [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	_, err := DecodeUser([]byte(b.String()), FormatYAML)
	var se *SyntaxError
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "alias") {
		t.Fatalf("alias bomb: err = %v, want a syntax error about aliases", err)
	}
}

func TestDecodeRefusesBodiesOverOneMebibyte(t *testing.T) {
	body := `{"name":{"givenName":"` + strings.Repeat("a", MaxBodyBytes) + `"}}`
	if _, err := DecodeUser([]byte(body), FormatJSON); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := ReadBody(strings.NewReader(body)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadBody err = %v, want ErrTooLarge", err)
	}
	if b, err := ReadBody(strings.NewReader(`{"id":"a"}`)); err != nil || string(b) != `{"id":"a"}` {
		t.Fatalf("ReadBody small = %q, %v", b, err)
	}
}

func TestDecodeReportsEveryStructuralProblemAtOnce(t *testing.T) {
	_, err := DecodeClient([]byte(`{"foo":1,"bar":2,"first_party":"yes"}`), FormatJSON)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("err = %v, want three problems", err)
	}
	for _, p := range []string{"bar", "first_party", "foo"} {
		if !hasPath(ve, p) {
			t.Fatalf("problems %+v miss %q", ve.Problems, p)
		}
	}
}

func TestFormatFromMediaType(t *testing.T) {
	tests := []struct {
		ct   string
		want Format
		ok   bool
	}{
		{"application/json", FormatJSON, true},
		{"application/json; charset=utf-8", FormatJSON, true},
		{"text/yaml", FormatYAML, true},
		{"application/yaml", FormatYAML, true},
		{"application/x-yaml", FormatYAML, true},
		{"application/x-www-form-urlencoded", 0, false},
		{"text/plain", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.ct, func(t *testing.T) {
			f, ok := FormatFromMediaType(tc.ct)
			if f != tc.want || ok != tc.ok {
				t.Fatalf("FormatFromMediaType(%q) = %v, %v", tc.ct, f, ok)
			}
		})
	}
}

func hasPath(ve *ValidationError, path string) bool {
	for _, p := range ve.Problems {
		if p.Path == path {
			return true
		}
	}
	return false
}
