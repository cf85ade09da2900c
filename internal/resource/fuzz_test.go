package resource

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to the decoder. Decoding must never
// panic, and whatever decodes must survive its own JSON encoding (what the
// store keeps) and validation. The seeds run in every `go test`.
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		body string
		yaml bool
	}{
		{aidboxAuthConfigYAML, true},
		{aidboxClientYAML, true},
		{aidboxUserYAML, true},
		{`{"id":"my-user","password":"password"}`, false},
		{`{"secret":"verysecret-0123456789","first_party":true,"grant_types":["code"],"auth":{"authorization_code":{"redirect_uri":"http://localhost:3001","access_token_expiration":360,"token_format":"jwt","secret_required":true,"refresh_token":true}}}`, false},
		{`{"twoFactor":{"issuerName":"my-app","validPastTokensCount":3,"webhook":{"endpoint":"https://my-app.com","timeout":500}}}`, false},
		{"twoFactor:\n  webhook: {endpoint: https://x, timeot: 5}\n", true},
		{"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", true},
		{"<<: {id: x}\n", true},
		{"id: !!binary aGVsbG8=\n", true},
		{"id: [a\n", true},
		{"--- \n...\n", true},
		{"? [a, b]\n: c\n", true},
		{"timeout: 0x10\n", true},
		{"auth: {password: {access_token_expiration: 1e400}}", true},
		{`{"id":"a","id":"b"}`, false},
		{`{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, false},
		{`{"meta":{"lastUpdated":"2026-01-01T00:00:00Z","versionId":"1"}}`, false},
		{"\xff\xfe", false},
		{"\x00", true},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.yaml)
	}
	ctx := context.Background()
	opts := Options{LookupIP: offline}
	f.Fuzz(func(t *testing.T, body []byte, isYAML bool) {
		format := FormatJSON
		if isYAML {
			format = FormatYAML
		}
		tree, err := Parse(body, format)
		if err != nil {
			return
		}
		for _, typ := range []string{TypeUser, TypeClient, TypeAuthConfig} {
			v, err := DecodeAs(typ, tree)
			if err != nil {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s decoded but does not encode: %v", typ, err)
			}
			again, err := Parse(b, FormatJSON)
			if err != nil {
				t.Fatalf("%s re-encoded as unparseable JSON %s: %v", typ, b, err)
			}
			if _, err := DecodeAs(typ, again); err != nil {
				t.Fatalf("%s does not decode its own encoding %s: %v", typ, b, err)
			}
			switch r := v.(type) {
			case *User:
				_ = r.Validate(ctx, opts)
			case *Client:
				_ = r.Validate(ctx, opts)
			case *AuthConfig:
				_ = r.Validate(ctx, opts)
			}
		}
	})
}

// FuzzRedirectURI feeds arbitrary redirect and post-logout URIs to Client
// validation: it never panics, and an accepted URI is absolute, has no
// fragment or wildcard, no forbidden scheme, a host when it is http(s),
// and plain http only on a loopback host.
func FuzzRedirectURI(f *testing.F) {
	for _, s := range []string{"https://app.example.com/cb", "http://localhost:3001/callback", "http://127.0.0.1:5555/cb", "com.example.app:/oauth",
		"javascript:alert(1)", "https://a.example/cb#frag", "https://*.example.com/cb", "http://evil.example/cb", "https:///cb",
		"HTTPS://APP.EXAMPLE.COM/cb", "data:text/html,x", "https://a.example/\u00e9", "//evil.example/cb", "https://a.example/cb?x=1&y"} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		c := Client{ID: "c", GrantTypes: []string{"code"}, PostLogoutRedirectURIs: StringList{raw},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RedirectURI: StringList{raw}}}}
		if c.Validate(ctx, Options{LookupIP: offline}) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsAny(raw, "#*") {
			t.Fatalf("accepted %q: not an absolute URL without fragment or wildcard", raw)
		}
		scheme := strings.ToLower(u.Scheme)
		if slices.Contains(forbiddenSchemes, scheme) {
			t.Fatalf("accepted %q with scheme %s", raw, scheme)
		}
		if (scheme == "http" || scheme == "https") && u.Hostname() == "" {
			t.Fatalf("accepted %q without a host", raw)
		}
		if scheme == "http" && !IsLoopbackHost(u.Hostname()) {
			t.Fatalf("accepted plain-http %q on a non-loopback host", raw)
		}
	})
}
