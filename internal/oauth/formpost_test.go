package oauth

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// formPostPage is what a browser gets for response_mode=form_post: the
// form's target and fields, and the response's CSP.
type formPostPage struct {
	status int
	csp    string
	action string
	fields map[string]string
	body   string
}

func readFormPostPage(t *testing.T, rec *httptest.ResponseRecorder) formPostPage {
	t.Helper()
	p := formPostPage{status: rec.Code, csp: rec.Header().Get("Content-Security-Policy"), fields: map[string]string{}, body: rec.Body.String()}
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
			}
			switch n.Data {
			case "form":
				p.action = attr["action"]
			case "input":
				p.fields[attr["name"]] = attr["value"]
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return p
}

func TestFormPostResponseMode(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	formPost := func(t *testing.T) (*AuthorizeRequest, string) {
		q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
		q.Set("response_mode", "form_post")
		q.Set("nonce", "nonce-0123456789")
		ar, err := e.parse(q)
		if err != nil {
			t.Fatalf("ParseAuthorize: %v", err)
		}
		return ar, q.Get("state")
	}

	t.Run("discovery advertises form_post", func(t *testing.T) {
		r := e.get("/.well-known/openid-configuration", "")
		modes, _ := r.body["response_modes_supported"].([]any)
		if len(modes) != 2 || modes[0] != "query" || modes[1] != "form_post" {
			t.Fatalf("response_modes_supported = %v", r.body["response_modes_supported"])
		}
	})

	t.Run("the code arrives in a form that posts to the redirect URI", func(t *testing.T) {
		ar, state := formPost(t)
		rec := httptest.NewRecorder()
		if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, aliceGrant()); err != nil {
			t.Fatal(err)
		}
		p := readFormPostPage(t, rec)
		if p.status != http.StatusOK || p.action != webRedirect || p.fields["code"] == "" || p.fields["state"] != state {
			t.Fatalf("page = %+v", p)
		}
		if !strings.Contains(p.body, `id="continue"`) {
			t.Fatalf("no Continue button for a browser without script: %s", p.body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
		}
	})

	t.Run("the page's CSP allows its one script by hash and nothing inline", func(t *testing.T) {
		ar, _ := formPost(t)
		rec := httptest.NewRecorder()
		if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, aliceGrant()); err != nil {
			t.Fatal(err)
		}
		p := readFormPostPage(t, rec)
		if !regexp.MustCompile(`script-src 'sha256-[A-Za-z0-9+/]+=*'`).MatchString(p.csp) || strings.Contains(p.csp, "unsafe-inline") {
			t.Fatalf("CSP = %q", p.csp)
		}
		if strings.Contains(p.body, "onload") || strings.Contains(p.body, "javascript:") {
			t.Fatalf("inline event handler in %s", p.body)
		}
	})

	t.Run("an error goes back by form_post too", func(t *testing.T) {
		ar, state := formPost(t)
		rec := httptest.NewRecorder()
		e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, ErrLoginRequired)
		p := readFormPostPage(t, rec)
		if p.action != webRedirect || p.fields["error"] != "login_required" || p.fields["state"] != state || p.fields["code"] != "" {
			t.Fatalf("page = %+v", p)
		}
		if !strings.Contains(p.csp, "script-src 'sha256-") {
			t.Fatalf("CSP = %q", p.csp)
		}
	})

	t.Run("field values are escaped", func(t *testing.T) {
		q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
		q.Set("response_mode", "form_post")
		q.Set("state", `"><script>alert(1)</script>`)
		ar, err := e.parse(q)
		if err != nil {
			t.Fatalf("ParseAuthorize: %v", err)
		}
		rec := httptest.NewRecorder()
		e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, ErrAccessDenied)
		p := readFormPostPage(t, rec)
		if strings.Contains(p.body, "<script>alert") || p.fields["state"] != q.Get("state") {
			t.Fatalf("state not escaped: %s", p.body)
		}
	})
}
