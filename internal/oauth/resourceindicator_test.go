package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const (
	ordersAPI  = "https://orders.example/api"
	billingAPI = "https://billing.example"
)

// audOf reads a response's aud as a list (a JWT may carry a string).
func audOf(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestResourceIndicators covers RFC 8707: `resource` on the token and
// authorization requests sets the access token's aud, limited to the
// resource servers the Client lists in `audience`.
func TestResourceIndicators(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	e.putClient(resource.Client{
		ID: "svc-aud", GrantTypes: []string{"client_credentials"}, Scope: []string{"patient.read"},
		Audience: []string{ordersAPI, billingAPI},
		Auth:     &resource.ClientAuth{ClientCredentials: &resource.GrantSettings{TokenFormat: "jwt"}},
	}, svcSecret)
	web := resource.Client{
		ID: "web-aud", FirstParty: true, GrantTypes: []string{"code", "refresh_token"}, Audience: []string{ordersAPI, billingAPI},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RedirectURI: resource.StringList{webRedirect}, RefreshToken: true}},
	}
	e.putClient(web, webSecret)
	cc := func(resources ...string) response {
		return e.post(PathToken, url.Values{"grant_type": {"client_credentials"}, "resource": resources}, "svc-aud", svcSecret)
	}

	t.Run("client_credentials with a listed resource gets a token for it", func(t *testing.T) {
		r := cc(ordersAPI)
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.raw)
		}
		_, claims := e.verifyJWT(r.str("access_token"))
		if aud := audOf(claims["aud"]); !slices.Equal(aud, []string{ordersAPI}) {
			t.Fatalf("aud = %v", claims["aud"])
		}
		if aud := audOf(e.introspect(r.str("access_token")).body["aud"]); !slices.Equal(aud, []string{ordersAPI}) {
			t.Fatalf("introspected aud = %v", aud)
		}
	})
	t.Run("two resources give a token for both", func(t *testing.T) {
		r := cc(ordersAPI, billingAPI)
		_, claims := e.verifyJWT(r.str("access_token"))
		if aud := audOf(claims["aud"]); !slices.Equal(aud, []string{ordersAPI, billingAPI}) {
			t.Fatalf("aud = %v", claims["aud"])
		}
	})
	t.Run("without resource the token is for the client, as before", func(t *testing.T) {
		r := cc()
		_, claims := e.verifyJWT(r.str("access_token"))
		if aud := audOf(claims["aud"]); !slices.Equal(aud, []string{"svc-aud"}) {
			t.Fatalf("aud = %v", claims["aud"])
		}
	})
	for _, tc := range []struct{ name, resource string }{
		{"a resource the client does not list", "https://other.example"},
		{"a relative resource", "/api"},
		{"a resource with a fragment", ordersAPI + "#x"},
		{"a resource with a space", "https://orders.example/a b"},
	} {
		t.Run(tc.name+" is refused with invalid_target", func(t *testing.T) {
			r := cc(tc.resource)
			if r.status != http.StatusBadRequest || r.str("error") != "invalid_target" || r.str("access_token") != "" {
				t.Fatalf("status %d %s", r.status, r.raw)
			}
		})
	}

	t.Run("a code flow resource survives the query the hosted pages park during sign-in", func(t *testing.T) {
		q := authorizeQuery("web-aud", webRedirect, challenge(verifier(64)), "openid")
		q.Add("resource", ordersAPI)
		ar, err := e.parse(q)
		if err != nil {
			t.Fatal(err)
		}
		resumed, err := e.parse(ar.Query)
		if err != nil {
			t.Fatal(err)
		}
		if got := resumed.ar.GetRequestedAudience(); !slices.Equal(got, []string{ordersAPI}) {
			t.Fatalf("resumed request's audience = %v (query %s)", got, ar.Query.Encode())
		}
	})
	t.Run("a code flow resource becomes the access token's audience", func(t *testing.T) {
		v := verifier(64)
		q := authorizeQuery("web-aud", webRedirect, challenge(v), "openid", "offline_access")
		q.Add("resource", ordersAPI)
		q.Add("resource", billingAPI)
		code := e.code(q)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect},
			"code_verifier": {v}, "resource": {billingAPI}}
		r := e.post(PathToken, form, "web-aud", webSecret)
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.raw)
		}
		if aud := audOf(e.introspect(r.str("access_token")).body["aud"]); !slices.Equal(aud, []string{billingAPI}) {
			t.Fatalf("aud = %v, want the token request's narrower resource", aud)
		}
		rf := e.post(PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}, "resource": {ordersAPI}}, "web-aud", webSecret)
		if rf.status != http.StatusOK {
			t.Fatalf("refresh: status %d %s", rf.status, rf.raw)
		}
		if aud := audOf(e.introspect(rf.str("access_token")).body["aud"]); !slices.Equal(aud, []string{ordersAPI}) {
			t.Fatalf("refreshed aud = %v, want the refresh request's resource", aud)
		}
		_, idClaims := e.verifyJWT(r.str("id_token"))
		if aud := audOf(idClaims["aud"]); !slices.Equal(aud, []string{"web-aud"}) {
			t.Fatalf("ID token aud = %v, want the client", aud)
		}
	})
	t.Run("a token request cannot widen the authorization's resources", func(t *testing.T) {
		v := verifier(64)
		q := authorizeQuery("web-aud", webRedirect, challenge(v), "openid")
		q.Set("resource", ordersAPI)
		code := e.code(q)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect},
			"code_verifier": {v}, "resource": {billingAPI}}
		r := e.post(PathToken, form, "web-aud", webSecret)
		if r.status != http.StatusBadRequest || r.str("error") != "invalid_target" {
			t.Fatalf("status %d %s", r.status, r.raw)
		}
	})
	t.Run("an authorization request for an unlisted resource is refused", func(t *testing.T) {
		q := authorizeQuery("web-aud", webRedirect, challenge(verifier(64)), "openid")
		q.Set("resource", "https://other.example")
		if _, err := e.parse(q); err == nil {
			t.Fatal("ParseAuthorize accepted an unlisted resource")
		} else if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "invalid_target" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a Client audience that is not an absolute URI is refused", func(t *testing.T) {
		bad := web
		bad.Audience = []string{"orders"}
		err := bad.Validate(context.Background(), resource.Options{})
		if err == nil {
			t.Fatal("Validate accepted a relative audience")
		}
	})
}
