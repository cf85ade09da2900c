package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// chromiumPath is where Debian's chromium package puts the browser; CI
// installs it, so a missing binary is a broken environment, not a reason to
// skip.
const chromiumPath = "/usr/bin/chromium"

const (
	// browserTimeout bounds a whole browser test, the browser's life included,
	// so a hang fails the test instead of stalling CI.
	browserTimeout = 60 * time.Second
	// browserStepTimeout bounds one step. It is shorter than browserTimeout so
	// that a stuck step still leaves the browser alive to describe the page.
	browserStepTimeout = 20 * time.Second
)

// browserRedirectURI is the redirect URI of the mywebapp client in
// webClientYAML. Nothing listens there: the tab answers it itself.
const browserRedirectURI = "http://localhost:3001/callback"

func TestBrowserSignInWithCode(t *testing.T) {
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/mywebapp", webClientYAML)
	app.mustPut("/User/alice", userYAML)

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)

	conf := &oauth2.Config{
		ClientID: "mywebapp", ClientSecret: "verysecret-0123456789",
		Endpoint: oauth2.Endpoint{
			AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: browserRedirectURI,
		Scopes:      []string{"openid"},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := app.URL + "/auth/authorize?" + url.Values{
		"client_id":             {"mywebapp"},
		"response_type":         {"code"},
		"redirect_uri":          {browserRedirectURI},
		"scope":                 {"openid"},
		"state":                 {"browser-state-1"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}.Encode()

	browserStep(t, ctx, "open the authorize URL", chromedp.Navigate(authURL))
	expectLoginPage(t, ctx, app)

	shot := screenshotPNG(t, ctx, "login.png")
	t.Logf("login page screenshot: %d bytes", len(shot))

	browserSignIn(t, ctx, "alice@example.com", "password")
	back := redirects.next(t, ctx, "the redirect to the client after signing in")
	if back.Scheme+"://"+back.Host+back.Path != browserRedirectURI {
		t.Fatalf("the browser was sent to %s, want %s", back, browserRedirectURI)
	}
	q := back.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("the client got an error instead of a code: %s (%s)", e, q.Get("error_description"))
	}
	if got := q.Get("state"); got != "browser-state-1" {
		t.Fatalf("state = %q, want browser-state-1 (redirect %s)", got, back)
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("no code in the redirect %s", back)
	}
	// The redirect was a top-level navigation: the tab now shows the client's page.
	browserStep(t, ctx, "show the client's callback page", chromedp.WaitVisible(chromedp.ID("client-callback")))

	exCtx, cancel := context.WithTimeout(context.Background(), browserStepTimeout)
	defer cancel()
	tok, err := conf.Exchange(exCtx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange the code from the browser: %v", err)
	}
	if tok.AccessToken == "" {
		t.Fatal("the token response has no access token")
	}
	var at struct {
		ClientID string `json:"client_id"`
		Subject  string `json:"sub"`
	}
	verifyJWT(t, app, tok.AccessToken, &at)
	if at.Subject != "alice" || at.ClientID != "mywebapp" {
		t.Fatalf("access token sub = %q, client_id = %q; want alice, mywebapp", at.Subject, at.ClientID)
	}
	if idToken, _ := tok.Extra("id_token").(string); idToken == "" {
		t.Fatal("scope openid was granted but the token response has no id_token")
	}

	// The code was spent by the exchange above.
	if _, err := conf.Exchange(exCtx, code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("the same code was exchanged twice")
	}
}

// newBrowserContext starts a headless Chromium for the test and returns the
// context of one tab in it. Its deadline (browserTimeout) bounds the browser's
// life; the browser is stopped and its profile removed when the test ends.
func newBrowserContext(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Chromium at %s (Debian: apt-get install chromium; .ci/run installs it): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)

	output := &lockedBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		// Tests often run as root in containers, where the sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// The test machine may have no network: keep Chromium from calling home.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(output),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc) // stops Chromium and waits for it, before its profile dir is removed
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Chromium output (last 4 KiB):\n%s", output.tail(4096))
		}
	})

	// Start the browser now, so that a failed launch reads as such.
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("start Chromium (%s): %v\n%s", chromiumPath, err, output.tail(4096))
	}
	return tabCtx
}

// browserStep runs actions in the tab within browserStepTimeout and fails the
// test with a description of the page when they fail.
func browserStep(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, describePage(ctx))
	}
}

// browserValue runs one action that reads a value, as browserStep does.
func browserValue[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, action)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, describePage(ctx))
	}
	return v
}

// describePage tells where the tab is and what it shows, for failure messages.
func describePage(ctx context.Context) string {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(dctx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	html, err := chromedp.Run(dctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		return fmt.Sprintf("page %s (cannot read its HTML: %v)", loc, err)
	}
	const limit = 8192
	if len(html) > limit {
		html = html[:limit] + "…"
	}
	return fmt.Sprintf("page %s:\n%s", loc, html)
}

// expectLoginPage checks that the tab shows Gatehouse's login form, with the
// fields a user fills in and the CSRF token the form posts back.
func expectLoginPage(t *testing.T, ctx context.Context, app *testApp) {
	t.Helper()
	browserStep(t, ctx, "show the login form",
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.WaitVisible(chromedp.ID("password")),
	)
	loc := browserValue(t, ctx, "read the location", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("location %q: %v", loc, err)
	}
	if !strings.HasPrefix(loc, app.URL+"/") || !strings.HasPrefix(u.Path, "/auth/login") {
		t.Fatalf("expected the login page under %s/auth/login, the tab is at %s", app.URL, loc)
	}
	csrf := browserValue(t, ctx, "read the CSRF field",
		chromedp.Evaluate[string](`(document.querySelector('form input[type=hidden][name=_csrf]') || {}).value || ""`))
	if csrf == "" {
		t.Fatalf("the login form has no _csrf token\n%s", describePage(ctx))
	}
}

// browserSignIn types the credentials into the login form and submits it
// with its button, as a person would.
func browserSignIn(t *testing.T, ctx context.Context, username, password string) {
	t.Helper()
	browserStep(t, ctx, "fill in and submit the login form",
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
}

// screenshotPNG captures the whole page as a PNG, checks that it decodes to a
// non-empty image, and saves it under the test's temp dir, and under
// $GATEHOUSE_TEST_ARTIFACTS when set (.ci/run keeps them there).
func screenshotPNG(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	buf := browserValue(t, ctx, "take a screenshot", chromedp.FullScreenshot(100))
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG (%d bytes): %v", len(buf), err)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		t.Fatalf("the screenshot is empty: %dx%d", cfg.Width, cfg.Height)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("GATEHOUSE_TEST_ARTIFACTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), buf, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return buf
}

// clientRedirects are the navigations of the tab to a client's redirect URI.
type clientRedirects struct {
	hits chan clientHit
}

type clientHit struct {
	url *url.URL
	err error
}

// interceptRedirects makes the tab answer every navigation to redirectURI
// itself with a small page (id "client-callback"), as the client would, and
// reports the URLs. Nothing needs to listen there, and the code in the URL
// never leaves the browser except through the test.
func interceptRedirects(t *testing.T, ctx context.Context, redirectURI string) *clientRedirects {
	t.Helper()
	lctx, cancel := context.WithCancel(ctx)
	paused := chromedp.Events(lctx, fetch.RequestPaused) // subscribe before enabling: no event lost
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: redirectURI + "*", RequestStage: fetch.RequestStageRequest}},
	}); err != nil {
		cancel()
		t.Fatalf("intercept %s: %v", redirectURI, err)
	}

	r := &clientRedirects{hits: make(chan clientHit, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev, err := range paused {
			if err != nil {
				return // the test is over
			}
			hit := clientHit{}
			switch u, perr := url.Parse(ev.Request.URL); {
			case perr != nil:
				hit.err = perr
			case ev.ResourceType != network.ResourceTypeDocument:
				hit.err = fmt.Errorf("a %s request to %s, not a navigation", ev.ResourceType, ev.Request.URL)
			default:
				hit.url = u
			}
			_, ferr := chromedp.Call(lctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
				RequestID:       ev.RequestID,
				ResponseCode:    200,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html; charset=utf-8"}},
				Body:            []byte(`<!doctype html><title>client</title><p id="client-callback">back at the client</p>`),
			})
			if ferr != nil && hit.err == nil && lctx.Err() == nil {
				hit.err = fmt.Errorf("answer the request to %s: %w", ev.Request.URL, ferr)
			}
			select {
			case r.hits <- hit:
			default: // nobody reads this many; the test fails elsewhere
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return r
}

// next waits for the next navigation to the redirect URI.
func (r *clientRedirects) next(t *testing.T, ctx context.Context, what string) *url.URL {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, browserStepTimeout)
	defer cancel()
	select {
	case hit := <-r.hits:
		if hit.err != nil {
			t.Fatalf("%s: %v", what, hit.err)
		}
		return hit.url
	case <-wctx.Done():
		err := wctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no navigation to the client within %v", browserStepTimeout)
		}
		t.Fatalf("%s: %v\n%s", what, err, describePage(ctx))
		return nil
	}
}

// lockedBuffer collects Chromium's output, which it writes from its own
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n bytes of the output, without the D-Bus complaints
// that Chromium prints on every machine that has no session bus.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var kept []string
	for line := range strings.Lines(b.buf.String()) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			kept = append(kept, line)
		}
	}
	s := strings.Join(kept, "")
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// A factor of the embedding program's own is offered, prepared and
// attempted on the hosted pages from the description it gives: a person
// in Chromium sees its prompt and a free-text box, a wrong answer is
// refused on the page, the right one signs in with the factor's amr.
func TestBrowserSignInWithACustomFactor(t *testing.T) {
	hw := &hwToken{used: map[string]bool{}}
	app := startAppWithDeps(t, gormstoretest.Open(t), secret.RandomBytes(32), func(d *Deps) {
		d.Factors = []signin.Factor{hw}
	})
	app.mustPut("/Client/mywebapp", webClientYAML)
	app.mustPut("/User/hw-alice", "email: hw-alice@example.com\npassword: password\n")

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)
	l := newOAuthLogin(app, "mywebapp")
	browserStep(t, ctx, "open the authorize URL", chromedp.Navigate(l.URL))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "hw-alice@example.com", "password")

	browserStep(t, ctx, "show the custom factor's prompt", chromedp.WaitVisible(chromedp.ID("code-prompt")))
	if prompt := browserValue(t, ctx, "read the prompt", chromedp.Text(chromedp.ID("code-prompt"))); !strings.Contains(prompt, "security token") {
		t.Fatalf("the prompt reads %q, want the factor's own", prompt)
	}
	if mode := browserValue(t, ctx, "read the input mode", chromedp.AttributeValue(chromedp.ID("code"), "inputmode")); mode.Exists {
		t.Fatalf("a free-text factor's box has inputmode %q", mode.Value)
	}
	browserStep(t, ctx, "type a wrong answer",
		chromedp.SendKeys(chromedp.ID("code"), "nope"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	browserStep(t, ctx, "type the token's answer",
		chromedp.SendKeys(chromedp.ID("code"), "hwk-hw-alice-1"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	back := redirects.next(t, ctx, "the redirect to the client after the custom factor")
	expectAMR(t, l.exchange(t, back), "pwd", "hwk", "mfa")
}

// A person in Chromium signed in with the password alone, who then turned
// on TOTP, opens a client that requires mfa: the tab shows the code prompt
// and no password field, the code takes them back to the client, and the
// ID token has the accumulated amr and the first sign-in's auth_time.
func TestBrowserStepUpAsksOnlyForTheCode(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/plain", webClientYAML)
	app.mustPut("/Client/bank", webClientYAML+"    required_acr: urn:gatehouse:acr:mfa\n")
	app.mustPut("/User/carol", "email: carol@example.com\npassword: password\n")

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)
	l0 := newOAuthLogin(app, "plain")
	browserStep(t, ctx, "open the plain client's authorize URL", chromedp.Navigate(l0.URL))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "carol@example.com", "password")
	first := l0.exchange(t, redirects.next(t, ctx, "the redirect to the plain client"))
	if first.ACR != "urn:gatehouse:acr:pwd" {
		t.Fatalf("the password sign-in has acr %q", first.ACR)
	}

	browserStep(t, ctx, "open the two-factor setup", chromedp.Navigate(app.URL+pathTwoFactorEnable), chromedp.WaitVisible(chromedp.ID("totp-secret")))
	a := &authenticator{user: "carol", secret: strings.TrimSpace(browserValue(t, ctx, "read the secret", chromedp.Text(chromedp.ID("totp-secret"))))}
	browserStep(t, ctx, "confirm the setup with a code",
		chromedp.SendKeys(chromedp.ID("code"), a.next(t)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("recovery-codes")),
	)
	time.Sleep(1100 * time.Millisecond) // a new auth_time would show

	l := newOAuthLogin(app, "bank")
	browserStep(t, ctx, "open the bank's authorize URL", chromedp.Navigate(l.URL), chromedp.WaitVisible(chromedp.ID("code")))
	if n := browserValue(t, ctx, "count password fields", chromedp.Evaluate[int](`document.querySelectorAll('input[type=password]').length`)); n != 0 {
		t.Fatalf("the step-up page has %d password fields\n%s", n, describePage(ctx))
	}
	browserStep(t, ctx, "type the code",
		chromedp.SendKeys(chromedp.ID("code"), a.next(t)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	id := l.exchange(t, redirects.next(t, ctx, "the redirect to the bank after the step-up"))
	if !slices.Equal(id.AMR, []string{"pwd", "otp", "mfa"}) || id.ACR != "urn:gatehouse:acr:mfa" || id.AuthTime != first.AuthTime {
		t.Fatalf("after the step-up: amr %v acr %s auth_time %d (first %d)", id.AMR, id.ACR, id.AuthTime, first.AuthTime)
	}
}

// TestBrowserRememberThisBrowser ticks the code page's "Don't ask again"
// box in Chromium: the next password sign-in in that browser skips the code,
// and the device cookie is out of the page's scripts' reach (HttpOnly).
func TestBrowserRememberThisBrowser(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/AuthConfig/default", "twoFactor:\n  rememberDevice:\n    enabled: true\n    days: 30\n")
	app.mustPut("/Client/plain", webClientYAML)
	app.mustPut("/User/dora", "email: dora@example.com\npassword: password\n")

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)
	l0 := newOAuthLogin(app, "plain")
	browserStep(t, ctx, "open the authorize URL", chromedp.Navigate(l0.URL))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "dora@example.com", "password")
	l0.exchange(t, redirects.next(t, ctx, "the redirect after the password sign-in"))

	browserStep(t, ctx, "open the two-factor setup", chromedp.Navigate(app.URL+pathTwoFactorEnable), chromedp.WaitVisible(chromedp.ID("totp-secret")))
	a := &authenticator{user: "dora", secret: strings.TrimSpace(browserValue(t, ctx, "read the secret", chromedp.Text(chromedp.ID("totp-secret"))))}
	browserStep(t, ctx, "confirm the setup with a code",
		chromedp.SendKeys(chromedp.ID("code"), a.next(t)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("recovery-codes")),
	)

	l1 := newOAuthLogin(app, "plain")
	browserStep(t, ctx, "sign in again", chromedp.Navigate(l1.URL+"&prompt=login"))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "dora@example.com", "password")
	browserStep(t, ctx, "tick the box and type the code",
		chromedp.WaitVisible(chromedp.ID("remember-device")),
		chromedp.Click(chromedp.ID("remember-device")),
		chromedp.SendKeys(chromedp.ID("code"), a.next(t)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	l1.exchange(t, redirects.next(t, ctx, "the redirect after the code"))
	browserStep(t, ctx, "the settings page lists this browser",
		chromedp.Navigate(app.URL+"/auth/two-factor"), chromedp.WaitVisible(chromedp.ID("remembered-devices")))
	if c := browserValue(t, ctx, "read document.cookie", chromedp.Evaluate[string](`document.cookie`)); strings.Contains(c, "gatehouse_device") {
		t.Fatalf("the device cookie is visible to scripts: %q", c)
	}

	l2 := newOAuthLogin(app, "plain")
	browserStep(t, ctx, "sign in once more", chromedp.Navigate(l2.URL+"&prompt=login"))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "dora@example.com", "password")
	id := l2.exchange(t, redirects.next(t, ctx, "the redirect without a code"))
	if !slices.Equal(id.AMR, []string{"pwd", "mfa"}) || id.ACR != "urn:gatehouse:acr:mfa" {
		t.Fatalf("the remembered sign-in: amr %v acr %s", id.AMR, id.ACR)
	}
}
