package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestBrowserFormPostReachesTheClient signs in with response_mode=form_post
// in Chromium: the page Gatehouse answers with must get past its own CSP
// and deliver the code to the client as a POST.
func TestBrowserFormPostReachesTheClient(t *testing.T) {
	posts := make(chan url.Values, 1)
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/callback" {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case posts <- r.PostForm:
		default:
		}
		fmt.Fprint(w, `<!doctype html><p id="client-callback">signed in</p>`)
	}))
	t.Cleanup(client.Close)
	redirect := client.URL + "/callback"

	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/formpost", fmt.Sprintf(`
secret: verysecret-0123456789
first_party: true
grant_types: [code]
scope: [openid]
auth:
  authorization_code:
    redirect_uri: '%s'
    secret_required: true
`, redirect))
	app.mustPut("/User/alice", userYAML)

	conf := &oauth2.Config{
		ClientID: "formpost", ClientSecret: "verysecret-0123456789",
		Endpoint:    oauth2.Endpoint{AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: redirect,
		Scopes:      []string{"openid"},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("form-post-state", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("response_mode", "form_post"), oauth2.SetAuthURLParam("nonce", "form-post-nonce"))

	ctx := newBrowserContext(t)
	browserStep(t, ctx, "open the authorize URL", chromedp.Navigate(authURL))
	expectLoginPage(t, ctx, app)
	browserSignIn(t, ctx, "alice@example.com", "password")

	var form url.Values
	select {
	case form = <-posts:
	case <-time.After(browserStepTimeout):
		t.Fatalf("the client never received the form post\n%s", describePage(ctx))
	}
	browserStep(t, ctx, "show the client's page after the POST", chromedp.WaitVisible(chromedp.ID("client-callback")))
	if form.Get("state") != "form-post-state" || form.Get("code") == "" || form.Get("error") != "" {
		t.Fatalf("the client received %v", form)
	}

	exCtx, cancel := context.WithTimeout(context.Background(), browserStepTimeout)
	defer cancel()
	tok, err := conf.Exchange(exCtx, form.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange the posted code: %v", err)
	}
	if idToken, _ := tok.Extra("id_token").(string); idToken == "" {
		t.Fatal("no id_token for the posted code")
	}
}
