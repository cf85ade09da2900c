package server

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// A person in Chromium, with the DevTools virtual authenticator standing
// in for the laptop's platform authenticator (CTAP2, internal transport,
// resident keys, user verification), registers a passkey on the hosted
// settings page, signs in with it as the second factor after the
// password, then without a password from the login page, and deletes it.
// The zero-config issuer is http://127.0.0.1:PORT; browsers refuse IP
// addresses as relying parties, so the pages are opened on localhost,
// Gatehouse's default relying party for a loopback issuer.
func TestBrowserPasskeys(t *testing.T) {
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/mywebapp", webClientYAML)
	app.mustPut("/User/pk-alice", "email: pk-alice@example.com\npassword: password\n")
	base := strings.Replace(app.URL, "127.0.0.1", "localhost", 1)
	local := func(u string) string { return strings.Replace(u, app.URL, base, 1) }

	ctx := newBrowserContext(t)
	redirects := interceptRedirects(t, ctx, browserRedirectURI)
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("enable the WebAuthn domain: %v", err)
	}
	auth, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true,
			HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
			DefaultBackupEligibility: true,
		},
	})
	if err != nil {
		t.Fatalf("add a virtual authenticator: %v", err)
	}

	// 1. Sign in with the password and add a passkey on the settings page.
	browserStep(t, ctx, "open the login page", chromedp.Navigate(base+"/auth/login"))
	if ac := browserValue(t, ctx, "read the username autocomplete", chromedp.AttributeValue(chromedp.ID("username"), "autocomplete")); ac.Value != "username webauthn" {
		t.Fatalf("the username field has autocomplete %q, want conditional UI's \"username webauthn\"", ac.Value)
	}
	browserSignIn(t, ctx, "pk-alice@example.com", "password")
	browserStep(t, ctx, "open the passkey settings",
		chromedp.WaitVisible(chromedp.CSS("body.page-signed_in")),
		chromedp.Navigate(base+"/auth/passkeys"),
		chromedp.WaitVisible(chromedp.ID("no-passkeys")),
	)
	browserStep(t, ctx, "add a passkey",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Test laptop"),
		chromedp.Click(chromedp.ID("passkey-add-button")),
		chromedp.WaitVisible(chromedp.CSS("#passkeys li.passkey")),
	)
	if name := browserValue(t, ctx, "read the passkey's name", chromedp.Text(chromedp.CSS("#passkeys .passkey-name"))); name != "Test laptop" {
		t.Fatalf("the new passkey is named %q", name)
	}
	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth.AuthenticatorID})
	if err != nil || len(creds.Credentials) != 1 || !creds.Credentials[0].IsResidentCredential || creds.Credentials[0].RpID != "localhost" {
		t.Fatalf("the authenticator holds %+v (%v), want one resident credential for localhost", creds, err)
	}
	stored, err := app.Store.ListWebAuthnCredentials(context.Background(), "pk-alice")
	if err != nil || len(stored) != 1 || !stored[0].BackupEligible || !stored[0].UserVerified {
		t.Fatalf("stored passkeys = %+v, %v", stored, err)
	}

	// presence turns the authenticator's touch on or off. While it is
	// off, the login page's conditional request (the passkey autofill,
	// which the virtual authenticator would answer at once) stays open.
	presence := func(on bool) {
		t.Helper()
		if _, err := chromedp.Call(ctx, webauthn.SetAutomaticPresenceSimulation, webauthn.SetAutomaticPresenceSimulationParams{
			AuthenticatorID: auth.AuthenticatorID, Enabled: on}); err != nil {
			t.Fatalf("set presence simulation %v: %v", on, err)
		}
	}

	// 2. The passkey is the second factor after the password.
	l := newOAuthLogin(app, "mywebapp")
	presence(false)
	browserStep(t, ctx, "open the authorize URL, asking to sign in again", chromedp.Navigate(local(l.URL)+"&prompt=login"))
	browserSignIn(t, ctx, "pk-alice@example.com", "password")
	browserStep(t, ctx, "wait for the passkey prompt", chromedp.WaitVisible(chromedp.ID("passkey-button")))
	presence(true)
	browserStep(t, ctx, "use the passkey as the second factor",
		chromedp.WaitVisible(chromedp.ID("passkey-button")),
		chromedp.Click(chromedp.ID("passkey-button")),
	)
	id := l.exchange(t, redirects.next(t, ctx, "the redirect to the client after the passkey"))
	expectAMR(t, id, "pwd", "hwk", "user", "mfa")

	// 3. Passwordless, in a browser that holds no session: with the
	// "Sign in with a passkey" button, then with the autofill alone.
	passwordless := func(what string, act func()) {
		t.Helper()
		if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		l := newOAuthLogin(app, "mywebapp")
		browserStep(t, ctx, "open the login page for "+what, chromedp.Navigate(local(l.URL)))
		act()
		id := l.exchange(t, redirects.next(t, ctx, "the redirect to the client after "+what))
		expectAMR(t, id, "hwk", "user", "mfa")
		if contains(id.AMR, "pwd") || id.ACR != "urn:gatehouse:acr:phr" {
			t.Fatalf("%s: id token amr %v, acr %q; want no pwd and the phishing-resistant acr", what, id.AMR, id.ACR)
		}
	}
	presence(false)
	passwordless("the passkey button", func() {
		browserStep(t, ctx, "find the passkey button", chromedp.WaitVisible(chromedp.ID("passkey-signin")))
		presence(true)
		// The autofill request pending since the page loaded may finish as
		// soon as presence is on and leave the page before the click lands:
		// click only if the button is still there (either way the sign-in
		// is the passkey's, which the ID token below checks).
		browserValue(t, ctx, "press the passkey button", chromedp.Evaluate[bool](`(() => { const b = document.getElementById("passkey-signin"); if (b) b.click(); return true })()`))
	})
	passwordless("the passkey autofill (conditional UI)", func() {})

	// 4. Delete it (the passkey sign-in was just now: no password asked).
	browserStep(t, ctx, "delete the passkey",
		chromedp.Navigate(base+"/auth/passkeys"),
		chromedp.WaitVisible(chromedp.CSS("#passkeys li.passkey")),
		chromedp.Click(chromedp.CSS("#passkeys button.delete")),
		chromedp.WaitVisible(chromedp.ID("no-passkeys")),
	)
	if stored, _ := app.Store.ListWebAuthnCredentials(context.Background(), "pk-alice"); len(stored) != 0 {
		t.Fatalf("after the delete the store holds %+v", stored)
	}
}
