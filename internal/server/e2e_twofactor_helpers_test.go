package server

// Helpers of the two-factor end-to-end tests: an authenticator app built on
// oathtool (an implementation of RFC 6238 other than the server's), a QR
// reader built on zbarimg, a form-reading browser step, an OAuth client, a
// webhook receiver, and stores whose raw bytes the tests can inspect.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const (
	tfPassword    = "password"
	tfRedirectURI = "http://localhost:3001/callback"
	tfPeriod      = 30 // seconds per TOTP step (RFC 6238 default, DESIGN.md §6)

	pathTwoFactorPrompt   = "/auth/login/two-factor"
	pathTwoFactorSettings = "/auth/two-factor"
	pathTwoFactorEnable   = "/auth/two-factor/enable"
	pathTwoFactorDisable  = "/auth/two-factor/disable"
)

// requireTool fails (never skips) when an external program the tests rely
// on is missing: CI installs it, so its absence is a broken environment.
func requireTool(t *testing.T, name, debianPackage string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed: install Debian's %s (apt-get install -y %s); .ci/run installs it", name, debianPackage, debianPackage)
	}
}

// --- TOTP through oathtool ---------------------------------------------------

func totpStep(at time.Time) int64 { return at.Unix() / tfPeriod }

// leftInStep is the time until the step containing at ends.
func leftInStep(at time.Time) time.Duration {
	return time.Unix((totpStep(at)+1)*tfPeriod, 0).Sub(at)
}

// waitForStepMargin returns once at least d remains in the current step, so
// that what follows runs inside one step and its step arithmetic holds.
func waitForStepMargin(d time.Duration) {
	if left := leftInStep(time.Now()); left < d {
		time.Sleep(left + 50*time.Millisecond)
	}
}

// oathtool runs `oathtool --totp -b [--now @UNIX] SECRET`.
func oathtool(t *testing.T, secret string, now *time.Time) string {
	t.Helper()
	args := []string{"--totp", "-b"}
	if now != nil {
		args = append(args, "--now", "@"+strconv.FormatInt(now.Unix(), 10))
	}
	args = append(args, secret)
	out, err := exec.Command("oathtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool %s: %v: %s", strings.Join(args[:len(args)-1], " "), err, out)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("oathtool printed %q, want six digits", code)
	}
	return code
}

// codeAtStep is the code oathtool computes for a TOTP step.
func codeAtStep(t *testing.T, secret string, step int64) string {
	t.Helper()
	at := time.Unix(step*tfPeriod, 0)
	return oathtool(t, secret, &at)
}

// codeNow is what an authenticator app shows right now, and its step.
func codeNow(t *testing.T, secret string) (string, int64) {
	t.Helper()
	for {
		before := totpStep(time.Now())
		code := oathtool(t, secret, nil)
		if totpStep(time.Now()) == before {
			return code, before
		}
	}
}

// wrongCode is six digits that match no step near now.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	cur := totpStep(time.Now())
	near := map[string]bool{}
	for s := cur - 4; s <= cur+4; s++ {
		near[codeAtStep(t, secret, s)] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*7919+271828)%1000000)
		if !near[c] {
			return c
		}
	}
}

// pastStepMargin is how much of the current step must be left for a test
// to type the past step's code: the request must reach the server before
// the step turns, or the code falls out of the window.
const pastStepMargin = 8 * time.Second

// authenticator is a user's authenticator app: it knows the secret and, like
// a careful user, never types a step it already used. The server accepts
// one past step and one future step (validPastTokensCount 1).
type authenticator struct {
	user     string
	secret   string
	last     int64 // newest step used
	recovery []string
}

// next returns a code the server must accept now: the oldest step of its
// window newer than the last one used. It takes the past step only when the
// current one has time left, and waits for the next step when the window
// holds no unused step.
func (a *authenticator) next(t *testing.T) string {
	t.Helper()
	for {
		now := time.Now()
		cur := totpStep(now)
		lo := cur
		if leftInStep(now) > pastStepMargin {
			lo = cur - 1
		}
		s := max(a.last+1, lo)
		if s <= cur+1 {
			a.last = s
			return codeAtStep(t, a.secret, s)
		}
		time.Sleep(leftInStep(now) + 50*time.Millisecond)
	}
}

// --- QR through zbarimg ------------------------------------------------------

// decodeQR reads a QR code PNG with zbarimg and returns its text.
func decodeQR(t *testing.T, png []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(f, png, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("zbarimg", "--raw", "-q", f)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zbarimg could not read the #qr image: %v %s", err, stderr.String())
	}
	return strings.TrimRight(string(out), "\r\n")
}

// --- pages -------------------------------------------------------------------

func parseHTML(t *testing.T, p page) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatalf("parse %s: %v", p.url, err)
	}
	return doc
}

func walk(n *html.Node, visit func(*html.Node) bool) bool {
	if !visit(n) {
		return false
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if !walk(c, visit) {
			return false
		}
	}
	return true
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func elementByID(doc *html.Node, id string) *html.Node {
	var found *html.Node
	walk(doc, func(n *html.Node) bool {
		if v, ok := attr(n, "id"); ok && n.Type == html.ElementNode && v == id {
			found = n
			return false
		}
		return true
	})
	return found
}

func elements(doc *html.Node, tag string) []*html.Node {
	var out []*html.Node
	walk(doc, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
		return true
	})
	return out
}

// textOf is the element's text with runs of white space folded to one.
func textOf(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) bool {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
			b.WriteByte(' ')
		}
		return true
	})
	return strings.Join(strings.Fields(b.String()), " ")
}

// pageText returns the text of the element with id, or fails.
func pageText(t *testing.T, p page, id string) string {
	t.Helper()
	n := elementByID(parseHTML(t, p), id)
	if n == nil {
		t.Fatalf("no #%s on %s (status %d):\n%s", id, p.url, p.status, p.body)
	}
	return textOf(n)
}

// errorText is the text of #error, "" when the page has none.
func errorText(t *testing.T, p page) string {
	t.Helper()
	if n := elementByID(parseHTML(t, p), "error"); n != nil {
		return textOf(n)
	}
	return ""
}

func has(t *testing.T, p page, id string) bool {
	t.Helper()
	return elementByID(parseHTML(t, p), id) != nil
}

// formWith finds the form that has a control named field.
func formWith(doc *html.Node, field string) *html.Node {
	for _, f := range elements(doc, "form") {
		found := false
		walk(f, func(n *html.Node) bool {
			if n.Type == html.ElementNode && (n.Data == "input" || n.Data == "button" || n.Data == "textarea" || n.Data == "select") {
				if v, _ := attr(n, "name"); v == field {
					found = true
					return false
				}
			}
			return true
		})
		if found {
			return f
		}
	}
	return nil
}

// formRequest builds what a browser posts for the page's form holding
// field: the form's hidden inputs (the CSRF token among them) plus values,
// to the form's action resolved against the page URL.
func formRequest(t *testing.T, p page, field string, values url.Values) (string, url.Values) {
	t.Helper()
	form := formWith(parseHTML(t, p), field)
	if form == nil {
		t.Fatalf("no form with a %q field on %s (status %d):\n%s", field, p.url, p.status, p.body)
	}
	return formTarget(t, p, form), mergeHidden(form, values)
}

func formTarget(t *testing.T, p page, form *html.Node) string {
	t.Helper()
	action, _ := attr(form, "action")
	target, err := p.url.Parse(action)
	if err != nil {
		t.Fatalf("form action %q on %s: %v", action, p.url, err)
	}
	return target.String()
}

func mergeHidden(form *html.Node, values url.Values) url.Values {
	out := url.Values{}
	walk(form, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == "input" {
			typ, _ := attr(n, "type")
			name, _ := attr(n, "name")
			if strings.EqualFold(typ, "hidden") && name != "" {
				v, _ := attr(n, "value")
				out.Set(name, v)
			}
		}
		return true
	})
	for k, v := range values {
		out[k] = v
	}
	return out
}

// submitForm posts the page's form that holds field, as a browser would.
func submitForm(t *testing.T, b *browser, p page, field string, values url.Values) page {
	t.Helper()
	target, form := formRequest(t, p, field, values)
	return b.post(target, form)
}

// postRaw is browser.post for goroutines: it reports errors instead of
// failing the test from a goroutine that does not run it.
func postRaw(b *browser, target string, form url.Values) (page, error) {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.client.Do(req)
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return page{}, err
	}
	return page{status: resp.StatusCode, url: resp.Request.URL, location: resp.Header.Get("Location"), body: string(body)}, nil
}

// browserFor is a fresh browser whose failures belong to t (a subtest).
func browserFor(t *testing.T, app *testApp) *browser {
	b := app.newBrowser()
	b.t = t
	return b
}

// recoveryCodes reads #recovery-codes, one code per <li>.
func recoveryCodes(t *testing.T, p page) []string {
	t.Helper()
	list := elementByID(parseHTML(t, p), "recovery-codes")
	if list == nil {
		t.Fatalf("no #recovery-codes on %s (status %d):\n%s", p.url, p.status, p.body)
	}
	var codes []string
	for _, li := range elements(list, "li") {
		codes = append(codes, textOf(li))
	}
	return codes
}

// enrolmentPage is what the enrolment page shows.
type enrolmentPage struct {
	secret string // #totp-secret
	uri    string // #otpauth-uri
	qr     []byte // the PNG in #qr's data: URI
}

func readEnrolmentPage(t *testing.T, p page) enrolmentPage {
	t.Helper()
	doc := parseHTML(t, p)
	secretEl, uriEl, qrEl := elementByID(doc, "totp-secret"), elementByID(doc, "otpauth-uri"), elementByID(doc, "qr")
	if p.status != http.StatusOK || secretEl == nil || uriEl == nil || qrEl == nil {
		t.Fatalf("expected the enrolment page with #totp-secret, #otpauth-uri and #qr; got %s (status %d):\n%s", p.url, p.status, p.body)
	}
	var e enrolmentPage
	// The secret may be shown in groups for reading; apps take it without spaces.
	e.secret = strings.ToUpper(strings.Join(strings.Fields(textOf(secretEl)), ""))
	e.uri = textOf(uriEl)
	if e.uri == "" {
		e.uri, _ = attr(uriEl, "href")
	}
	if qrEl.Data != "img" {
		t.Fatalf("#qr is a <%s>, want an <img>", qrEl.Data)
	}
	src, _ := attr(qrEl, "src")
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(src, prefix) {
		t.Fatalf("#qr src = %.60q…, want a %s URI", src, prefix)
	}
	png, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, prefix))
	if err != nil {
		t.Fatalf("#qr src is not base64: %v", err)
	}
	e.qr = png
	if _, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(e.secret, "=")); err != nil || e.secret == "" {
		t.Fatalf("#totp-secret %q is not base32: %v", e.secret, err)
	}
	return e
}

// checkOTPAuthURI checks the Key URI an authenticator app reads.
func checkOTPAuthURI(t *testing.T, raw, wantSecret, wantIssuer, wantAccount string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("otpauth URI %q: %v", raw, err)
	}
	q := u.Query()
	switch {
	case u.Scheme != "otpauth" || u.Host != "totp":
		t.Fatalf("otpauth URI %q: want otpauth://totp/…", raw)
	case u.Path != "/"+wantIssuer+":"+wantAccount:
		t.Fatalf("otpauth URI label = %q, want %q", u.Path, "/"+wantIssuer+":"+wantAccount)
	case q.Get("secret") != wantSecret:
		t.Fatalf("otpauth URI secret differs from #totp-secret")
	case q.Get("issuer") != wantIssuer:
		t.Fatalf("otpauth URI issuer = %q, want %q", q.Get("issuer"), wantIssuer)
	case q.Get("algorithm") != "SHA1" || q.Get("digits") != "6" || q.Get("period") != "30":
		t.Fatalf("otpauth URI parameters algorithm=%q digits=%q period=%q, want SHA1, 6, 30", q.Get("algorithm"), q.Get("digits"), q.Get("period"))
	}
}

// --- sign-in steps -----------------------------------------------------------

// passwordStep opens start (an authorize URL or /auth/login) and submits the
// password form; it returns the page the browser ends on.
func passwordStep(t *testing.T, b *browser, start, username string) page {
	t.Helper()
	p := b.get(start)
	if p.location != "" || p.url.Path != "/auth/login" {
		t.Fatalf("expected the login page from %s, got %s (status %d, location %q):\n%s", start, p.url, p.status, p.location, p.body)
	}
	return submitForm(t, b, p, "password", url.Values{"username": {username}, "password": {tfPassword}})
}

// expectCodePrompt fails unless p is the code prompt of a sign-in.
func expectCodePrompt(t *testing.T, p page) {
	t.Helper()
	if p.status != http.StatusOK || p.location != "" || p.url.Path != pathTwoFactorPrompt || formWith(parseHTML(t, p), "code") == nil {
		t.Fatalf("expected the code prompt at %s, got %s (status %d, location %q):\n%s", pathTwoFactorPrompt, p.url, p.status, p.location, p.body)
	}
}

// submitCode types code into the prompt p.
func submitCode(t *testing.T, b *browser, p page, code string) page {
	t.Helper()
	return submitForm(t, b, p, "code", url.Values{"code": {code}})
}

// expectRefused fails unless p, the answer to what, shows the form with
// field again and #error reads msg: every refused code gets one answer.
func expectRefused(t *testing.T, p page, field, msg, what string) {
	t.Helper()
	if p.status >= 500 {
		t.Fatalf("%s: server error %d on %s:\n%s", what, p.status, p.url, p.body)
	}
	if p.location != "" {
		t.Fatalf("%s: a refused code left Gatehouse for %s", what, p.location)
	}
	if got := errorText(t, p); got != msg {
		t.Fatalf("%s: #error = %q, want %q (page %s, status %d):\n%.3000s", what, got, msg, p.url, p.status, p.body)
	}
	if formWith(parseHTML(t, p), field) == nil {
		t.Fatalf("%s: the page has no %q field to try again (%s, status %d):\n%.3000s", what, field, p.url, p.status, p.body)
	}
}

// toClient returns the redirect back to the client that p carries, passing
// a consent page if one comes first. It fails on an error redirect.
func toClient(t *testing.T, b *browser, p page) *url.URL {
	t.Helper()
	if p.location == "" && p.url.Path == "/auth/consent" {
		p = b.submit(p, "/auth/consent", url.Values{"decision": {"allow"}})
	}
	if p.location == "" {
		t.Fatalf("the sign-in did not return to the client; ended at %s (status %d): #error %q\n%s", p.url, p.status, errorText(t, p), p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme+"://"+u.Host+u.Path != tfRedirectURI {
		t.Fatalf("redirected to %s, want the client's %s", u, tfRedirectURI)
	}
	if e := u.Query().Get("error"); e != "" || u.Query().Get("code") == "" {
		t.Fatalf("the client got no code: %s", u)
	}
	return u
}

// oauthLogin is one authorization request of a client, with PKCE.
type oauthLogin struct {
	app      *testApp
	conf     *oauth2.Config
	verifier string
	state    string
	URL      string
}

// extraScopes are asked for beside openid and email, e.g. offline_access
// when the test needs a refresh token.
func newOAuthLogin(app *testApp, clientID string, extraScopes ...string) oauthLogin {
	conf := &oauth2.Config{
		ClientID: clientID, ClientSecret: "verysecret-0123456789",
		Endpoint:    oauth2.Endpoint{AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: tfRedirectURI,
		Scopes:      append([]string{"openid", "email"}, extraScopes...),
	}
	l := oauthLogin{app: app, conf: conf, verifier: oauth2.GenerateVerifier(), state: "st-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	l.URL = conf.AuthCodeURL(l.state, oauth2.S256ChallengeOption(l.verifier), oauth2.SetAuthURLParam("nonce", "n-"+l.state))
	return l
}

// exchange trades the code of the redirect back for tokens and returns the
// ID token's claims after checking its signature against the JWKS.
func (l oauthLogin) exchange(t *testing.T, back *url.URL) idClaims {
	t.Helper()
	return l.idClaims(t, l.tokens(t, back))
}

// tokens trades the code of the redirect back for tokens.
func (l oauthLogin) tokens(t *testing.T, back *url.URL) *oauth2.Token {
	t.Helper()
	if got := back.Query().Get("state"); got != l.state {
		t.Fatalf("state = %q, want %q", got, l.state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := l.conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		t.Fatalf("exchange the code: %v", err)
	}
	return tok
}

// idClaims checks the ID token of tok against the JWKS and returns its claims.
func (l oauthLogin) idClaims(t *testing.T, tok *oauth2.Token) idClaims {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in the token response")
	}
	var id idClaims
	verifyJWT(t, l.app, raw, &id)
	if err := id.Validate(jwt.Expected{Issuer: l.app.URL, Audience: jwt.Audience{l.conf.ClientID}}); err != nil {
		t.Fatalf("id token: %v", err)
	}
	return id
}

func expectAMR(t *testing.T, id idClaims, want ...string) {
	t.Helper()
	for _, m := range want {
		if !contains(id.AMR, m) {
			t.Fatalf("id token amr = %v, want it to contain %v", id.AMR, want)
		}
	}
}

// --- admin API ---------------------------------------------------------------

func adminRequest(t *testing.T, app *testApp, method, path, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, app.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", testAdminPassword)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func putResource(t *testing.T, app *testApp, path, yaml string) {
	t.Helper()
	if code, body := adminRequest(t, app, http.MethodPut, path, "text/yaml", yaml); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("PUT %s = %d %s", path, code, body)
	}
}

// putUser creates a user whose e-mail is <id>@example.com.
func putUser(t *testing.T, app *testApp, id, extra string) {
	t.Helper()
	putResource(t, app, "/User/"+id, "email: "+id+"@example.com\npassword: "+tfPassword+"\n"+extra)
}

type userTwoFactor struct {
	Enabled                bool       `json:"enabled"`
	Method                 string     `json:"method"`
	EnrolledAt             *time.Time `json:"enrolledAt"`
	RecoveryCodesRemaining *int       `json:"recoveryCodesRemaining"`
}

// userTwoFactorOf reads User.twoFactor through the admin API, with the raw body.
func userTwoFactorOf(t *testing.T, app *testApp, id string) (userTwoFactor, string) {
	t.Helper()
	code, body := adminRequest(t, app, http.MethodGet, "/User/"+id, "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /User/%s = %d %s", id, code, body)
	}
	var u struct {
		TwoFactor *userTwoFactor `json:"twoFactor"`
	}
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatalf("GET /User/%s: %v: %s", id, err, body)
	}
	if u.TwoFactor == nil {
		return userTwoFactor{}, body
	}
	return *u.TwoFactor, body
}

type auditRecord struct {
	Type   string            `json:"type"`
	User   string            `json:"user"`
	Detail map[string]string `json:"detail"`
}

// auditEvents lists the stored audit events of a user and type.
func auditEvents(t *testing.T, app *testApp, user, typ string) []auditRecord {
	t.Helper()
	q := url.Values{"user": {user}, "_count": {"1000"}}
	if typ != "" {
		q.Set("type", typ)
	}
	code, body := adminRequest(t, app, http.MethodGet, "/AuditEvent?"+q.Encode(), "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /AuditEvent?%s = %d %s", q.Encode(), code, body)
	}
	var b struct {
		Total int `json:"total"`
		Entry []struct {
			Resource auditRecord `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("audit bundle: %v: %s", err, body)
	}
	if b.Total > len(b.Entry) {
		t.Fatalf("more than %d audit events for %s", len(b.Entry), user)
	}
	out := make([]auditRecord, 0, len(b.Entry))
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

// --- enrolment ---------------------------------------------------------------

// signInPassword signs b in at /auth/login with the password only.
func signInPassword(t *testing.T, b *browser, username string) page {
	t.Helper()
	p := passwordStep(t, b, b.app.URL+"/auth/login", username)
	if p.status != http.StatusOK || p.location != "" || p.url.Path == pathTwoFactorPrompt || errorText(t, p) != "" {
		t.Fatalf("password sign-in of %s ended at %s (status %d), #error %q:\n%s", username, p.url, p.status, errorText(t, p), p.body)
	}
	return p
}

// enrolUser creates a user, signs a browser in and enrols TOTP on the
// settings page. The browser stays signed in (password only).
func enrolUser(t *testing.T, app *testApp, id, extra string) (*authenticator, *browser) {
	t.Helper()
	putUser(t, app, id, extra)
	b := browserFor(t, app)
	signInPassword(t, b, id)
	p := b.get(app.URL + pathTwoFactorEnable)
	e := readEnrolmentPage(t, p)
	a := &authenticator{user: id, secret: e.secret}
	p = submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}})
	a.recovery = recoveryCodes(t, p)
	if len(a.recovery) != 10 {
		t.Fatalf("%d recovery codes after enrolling %s, want 10", len(a.recovery), id)
	}
	return a, b
}

// loginWithCode runs a whole OAuth sign-in of a 2FA user and returns the
// ID token's claims.
func loginWithCode(t *testing.T, app *testApp, clientID, username, code string) idClaims {
	t.Helper()
	l := newOAuthLogin(app, clientID)
	b := browserFor(t, app)
	p := passwordStep(t, b, l.URL, username)
	expectCodePrompt(t, p)
	return l.exchange(t, toClient(t, b, submitCode(t, b, p, code)))
}

// --- webhook receiver --------------------------------------------------------

type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// hookReceiver is a local webhook endpoint that records what it gets. A
// slow one holds every request until the test ends or the sender gives up.
type hookReceiver struct {
	srv *httptest.Server
	got chan delivery

	mu  sync.Mutex
	all []delivery
}

func newHookReceiver(t *testing.T, slow bool) *hookReceiver {
	r := &hookReceiver{got: make(chan delivery, 256)}
	release := make(chan struct{})
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{header: req.Header.Clone(), body: body, at: time.Now()}
		r.mu.Lock()
		r.all = append(r.all, d)
		r.mu.Unlock()
		select {
		case r.got <- d:
		default:
		}
		if slow {
			select {
			case <-release:
			case <-req.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	// Registered after Close, so it runs first and Close does not wait.
	t.Cleanup(func() { close(release) })
	return r
}

func (r *hookReceiver) drain() {
	for {
		select {
		case <-r.got:
		default:
			return
		}
	}
}

func (r *hookReceiver) next(t *testing.T, within time.Duration) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(within):
		t.Fatalf("the webhook receiver got nothing within %v", within)
		return delivery{}
	}
}

func (r *hookReceiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.all...)
}

// codePayload is the webhook body of DESIGN.md §6.
type codePayload struct {
	Event string `json:"event"`
	User  struct {
		ID          string `json:"id"`
		Email       string `json:"email"`
		PhoneNumber string `json:"phoneNumber"`
	} `json:"user"`
	Token       string `json:"token"`
	Channel     string `json:"channel"`
	Destination string `json:"destination"`
	ExpiresAt   string `json:"expiresAt"`
	ID          string `json:"id"`
}

// checkSignature verifies Gatehouse-Signature (t=<unix>,v1=<hex HMAC-SHA256
// of "t.body">) with our own HMAC, not the server's helper.
func checkSignature(t *testing.T, d delivery, key string) {
	t.Helper()
	h := d.header.Get("Gatehouse-Signature")
	var ts string
	var sigs []string
	for _, part := range strings.Split(h, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		t.Fatalf("Gatehouse-Signature = %q, want t=<unix>,v1=<hex>", h)
	}
	if skew := d.at.Sub(time.Unix(unix, 0)); skew > time.Minute || skew < -time.Minute {
		t.Fatalf("signature timestamp %d is %v away from the delivery", unix, skew)
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(ts + "." + string(d.body)))
	want := hex.EncodeToString(mac.Sum(nil))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return
		}
	}
	t.Fatalf("Gatehouse-Signature %q does not verify with the configured secret", h)
}

// --- stores ------------------------------------------------------------------

// inspectableStore is a store whose raw contents a test can read, as an
// attacker with a copy of the database would.
type inspectableStore struct {
	store store.Store
	dump  func(t *testing.T) []byte
}

// openInspectable opens the backend named as gormstoretest.Backends names
// it, migrated, closed at cleanup.
func openInspectable(t *testing.T, backend string) inspectableStore {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	switch backend {
	case "sqlite":
		dir := t.TempDir()
		st, err := gormstore.OpenSQLite(filepath.Join(dir, "gatehouse.db"), logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return inspectableStore{store: st, dump: func(t *testing.T) []byte {
			// The database file and its WAL and shared-memory files.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for _, e := range entries {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return all
		}}
	case "postgres":
		dsn := gormstoretest.PostgresDSN(t)
		if dsn == "" {
			t.Fatalf("%s is not set", gormstoretest.PostgresEnv)
		}
		st := gormstoretest.OpenPostgresAt(t, dsn)
		return inspectableStore{store: st, dump: func(t *testing.T) []byte { return dumpPostgres(t, dsn) }}
	}
	t.Fatalf("unknown backend %q", backend)
	return inspectableStore{}
}

// dumpPostgres is every row of every table of the DSN's schema as text
// (bytea comes out as \x hex).
func dumpPostgres(t *testing.T, dsn string) []byte {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("the test schema has no tables")
	}
	var all bytes.Buffer
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT CAST(t AS text) FROM "`+table+`" AS t`)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				t.Fatal(err)
			}
			all.WriteString(row)
			all.WriteByte('\n')
		}
		rows.Close()
	}
	return all.Bytes()
}
