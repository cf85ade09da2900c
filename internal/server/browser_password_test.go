package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// startMailApp is a server that mails through a real SMTP server, with
// the mywebapp client.
func startMailApp(t *testing.T) (*testApp, *smtptest.Server) {
	t.Helper()
	mail := smtptest.Start(t)
	app := startApp(t, gormstoretest.Open(t), func(c *config.Config) {
		c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.From = mail.Host, mail.Port, "none", "Gatehouse <noreply@example.com>"
	})
	app.mustPut("/Client/mywebapp", webClientYAML)
	return app, mail
}

// A person who forgot the password, in Chromium: "Forgot password?" on the
// login page, the e-mail's link, a new password, every old session gone,
// and the next sign-in still asks for the authenticator app's code.
func TestBrowserForgotPasswordWithTOTP(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	app, mail := startMailApp(t)
	a, oldSession := enrolUser(t, app, "gus", "")

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)
	l := newOAuthLogin(app, "mywebapp")
	browserStep(t, ctx, "open the authorize URL", chromedp.Navigate(l.URL))
	expectLoginPage(t, ctx, app)
	browserStep(t, ctx, "ask for a reset e-mail",
		chromedp.Click(chromedp.ID("forgot-password")),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), "gus@example.com"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	_, link := resetMail(t, app, mail, 1, "gus@example.com")

	browserStep(t, ctx, "follow the link and set a new password",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("new_password")),
		chromedp.SendKeys(chromedp.ID("new_password"), newPassword),
		chromedp.SendKeys(chromedp.ID("new_password_repeat"), newPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("password-changed")),
	)
	if p := oldSession.get(app.URL + pathTwoFactorSettings); p.url.Path != "/auth/login" {
		t.Fatalf("the session from before the reset still works: %s", p.url)
	}

	// The sign-in the app started goes on: new password, then the code.
	browserStep(t, ctx, "sign in again", chromedp.Click(chromedp.ID("continue")))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "gus@example.com", newPassword)
	browserStep(t, ctx, "type the authenticator code",
		chromedp.WaitVisible(chromedp.ID("code")),
		chromedp.SendKeys(chromedp.ID("code"), a.next(t)),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	expectAMR(t, l.exchange(t, redirects.next(t, ctx, "the redirect after the code")), "pwd", "otp", "mfa")
}

// axeSource is axe-core's browser build, from `npm ci --prefix interop`.
// .ci/run installs it and sets GATEHOUSE_TEST_INTEROP, and then a missing
// file fails the test; elsewhere the test runs when it is there.
func axeSource(t *testing.T) string {
	t.Helper()
	path := filepath.Join("..", "..", "interop", "node_modules", "axe-core", "axe.min.js")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return string(b)
	case os.Getenv("GATEHOUSE_TEST_INTEROP") != "":
		t.Fatalf("axe-core is not installed: run `npm ci --prefix interop` (%v)", err)
	default:
		t.Skip("run `npm ci --prefix interop` to check the pages with axe-core")
	}
	return ""
}

// axeViolation is one failed axe rule, as the test reports it.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeRun checks the page in the tab against axe's WCAG 2.x A and AA rules
// (2.2 included) and returns the serious and critical violations.
func axeRun(t *testing.T, ctx context.Context, axe string) []axeViolation {
	t.Helper()
	// DevTools evaluation is not bound by the page's CSP, which allows no
	// inline script: the pages stay as strict as they are served.
	if !browserValue(t, ctx, "look for axe", chromedp.Evaluate[bool](`typeof axe !== "undefined"`)) {
		browserValue(t, ctx, "load axe-core", chromedp.Evaluate[bool](axe+";true"))
	}
	out := browserValue(t, ctx, "run axe", chromedp.Evaluate[string](`axe.run(document, {
		runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
		resultTypes: ["violations"]
	}).then(r => JSON.stringify({passed: r.passes.length, violations: r.violations
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))}))`,
		chromedp.EvalAwaitPromise))
	var res struct {
		Passed     int            `json:"passed"`
		Violations []axeViolation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("axe's answer %q: %v", out, err)
	}
	// A run that checked nothing would pass every page.
	if res.Passed == 0 && len(res.Violations) == 0 {
		t.Fatalf("axe checked no rule on the page\n%s", describePage(ctx))
	}
	return res.Violations
}

// widthOverflow is how many CSS pixels the page is wider than the window.
func widthOverflow(t *testing.T, ctx context.Context) int {
	t.Helper()
	return browserValue(t, ctx, "measure the page width",
		chromedp.Evaluate[int](`Math.max(0, document.documentElement.scrollWidth - window.innerWidth)`))
}

// Every hosted page a person meets passes axe-core's WCAG 2.2 A/AA rules
// with no serious or critical violation, in Chromium, at a desktop width
// and at 320 CSS pixels (no sideways scrolling there); the login page
// passes in each language.
func TestBrowserPagesAreAccessible(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	axe := axeSource(t)
	app, mail := startMailApp(t)
	app.mustPut("/Client/thirdparty", strings.Replace(webClientYAML, "first_party: true", "first_party: false", 1))
	app.mustPut("/AuthConfig/default", "signUp:\n  enabled: true\n")
	a, _ := enrolUser(t, app, "ada", "")
	putUser(t, app, "bob", "")

	var failures []string
	mailed := 0
	for round, width := range []int64{1024, 320} {
		// A browser of its own per width: each round starts signed out.
		ctx := newBrowserContext(t)
		interceptRedirects(t, ctx, browserRedirectURI)
		browserStep(t, ctx, fmt.Sprintf("set the width to %d", width), chromedp.EmulateViewport(width, 800))
		navigate := func(u string) func() {
			return func() { browserStep(t, ctx, "open "+u, chromedp.Navigate(u)) }
		}
		submit := chromedp.Click(chromedp.CSS(`form button[type="submit"]`))
		var resetLink string
		pages := []struct {
			name string
			open func() // brings the tab to the page
			wait string // a CSS selector of what the page shows
		}{
			{"the login page of an app", navigate(newOAuthLogin(app, "mywebapp").URL), "#username"},
			{"a refused sign-in", func() {
				navigate(app.URL + "/auth/login")()
				browserSignIn(t, ctx, "ada@example.com", "wrong-password")
			}, "#error"},
			{"the forgotten-password page", navigate(app.URL + "/auth/forgot-password"), "#email"},
			{"the code form after asking for the e-mail", func() {
				navigate(app.URL + "/auth/forgot-password")()
				browserStep(t, ctx, "ask for the e-mail", chromedp.SendKeys(chromedp.ID("email"), "bob@example.com"), submit)
				mailed++
				_, resetLink = resetMail(t, app, mail, mailed, "bob@example.com")
			}, "#notice"},
			{"the e-mail's link with mismatched passwords", func() {
				navigate(resetLink)()
				browserStep(t, ctx, "type two passwords",
					chromedp.SendKeys(chromedp.ID("new_password"), newPassword),
					chromedp.SendKeys(chromedp.ID("new_password_repeat"), newPassword+"x"),
					submit)
			}, "#error"},
			{"the sign-up page", navigate(app.URL + "/auth/sign-up"), "#email"},
			{"the sign-up code form", func() {
				browserStep(t, ctx, "fill in the sign-up form",
					chromedp.SendKeys(chromedp.ID("email"), fmt.Sprintf("new%d@example.com", round)),
					chromedp.SendKeys(chromedp.ID("new_password"), newPassword),
					chromedp.SendKeys(chromedp.ID("new_password_repeat"), newPassword),
					submit)
				mailed++
			}, "#notice"},
			{"the code prompt of a two-step sign-in", func() {
				navigate(newOAuthLogin(app, "thirdparty").URL)()
				browserSignIn(t, ctx, "ada@example.com", tfPassword)
			}, "#code"},
			{"the consent page", func() {
				// A recovery code: no waiting for the app's next code.
				browserStep(t, ctx, "type a recovery code", chromedp.SendKeys(chromedp.ID("code"), a.recovery[round]), submit)
			}, `button[value="allow"]`},
			{"the two-step settings", navigate(app.URL + pathTwoFactorSettings), "#two-factor-status"},
			{"the change-password page", navigate(app.URL + "/auth/change-password"), "#current_password"},
			{"a refused password change", func() {
				browserStep(t, ctx, "type a wrong current password",
					chromedp.SendKeys(chromedp.ID("current_password"), "not-it-at-all"),
					chromedp.SendKeys(chromedp.ID("new_password"), newPassword),
					chromedp.SendKeys(chromedp.ID("new_password_repeat"), newPassword),
					chromedp.SendKeys(chromedp.ID("code"), "000000"),
					submit)
			}, "#error"},
			{"the passkeys page", navigate(app.URL + "/auth/passkeys"), "#heading"},
			{"the sign-out question", navigate(app.URL + "/auth/logout"), "#heading"},
			{"an error page", navigate(app.URL + "/auth/authorize?client_id=nobody&response_type=code"), "#heading"},
		}
		for _, p := range pages {
			p.open()
			browserStep(t, ctx, "wait for "+p.wait+" on "+p.name, chromedp.WaitVisible(chromedp.CSS(p.wait)))
			for _, v := range axeRun(t, ctx, axe) {
				failures = append(failures, fmt.Sprintf("%s at %dpx: %s (%s) %s: %v", p.name, width, v.ID, v.Impact, v.Help, v.Nodes))
			}
			if over := widthOverflow(t, ctx); over > 0 {
				failures = append(failures, fmt.Sprintf("%s at %dpx scrolls sideways by %dpx", p.name, width, over))
			}
		}
		if round > 0 {
			continue
		}
		for _, lang := range i18n.Languages {
			browserStep(t, ctx, "open the login page in "+lang,
				chromedp.Navigate(app.URL+"/auth/login?"+url.Values{"ui_locales": {lang}}.Encode()),
				chromedp.WaitVisible(chromedp.ID("heading")))
			if got := browserValue(t, ctx, "read <html lang>", chromedp.Evaluate[string](`document.documentElement.lang`)); got != lang {
				failures = append(failures, fmt.Sprintf("the login page in %s has lang %q", lang, got))
			}
			for _, v := range axeRun(t, ctx, axe) {
				failures = append(failures, fmt.Sprintf("the login page in %s: %s (%s) %s: %v", lang, v.ID, v.Impact, v.Help, v.Nodes))
			}
			screenshotPNG(t, ctx, "login-"+lang+".png")
		}
	}
	if len(failures) > 0 {
		slices.Sort(failures)
		t.Fatalf("%d accessibility failures:\n%s", len(failures), strings.Join(failures, "\n"))
	}
}
