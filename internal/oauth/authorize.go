package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/gatehouse/gatehouse/internal/store"
)

var challengeFormat = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// errUnmetAuthenticationRequirements is the OpenID Connect error fosite
// does not define; fosite writes it to the redirect URI like its own.
var errUnmetAuthenticationRequirements = &fosite.RFC6749Error{
	ErrorField:       "unmet_authentication_requirements",
	DescriptionField: "The Authorization Server cannot meet the requested authentication requirements.",
	CodeField:        http.StatusBadRequest,
}

// authorizeParams are the parameters AuthorizeRequest.Query keeps. The hosted
// pages may parse a login POST, whose form also carries the password: only
// protocol parameters may be copied out, so nothing else ends up stored.
var authorizeParams = []string{
	"client_id", "response_type", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint",
	"response_mode", "ui_locales", "acr_values", "id_token_hint", "display", "claims",
	"resource", pushedMarkParam,
}

// maxClaimsLen bounds the claims parameter: it is kept with a parked
// request in the browser session.
const maxClaimsLen = 4096

// claimsACR reads the acr member of the claims parameter (OpenID Connect
// Core §5.5.1.1): the values asked for ("value" or "values") and whether
// they are essential. Every other claim request is accepted and left to
// the scopes (a claim not returned is no error, §5.5). A malformed
// parameter is an error.
func claimsACR(raw string) (values []string, essential bool, err error) {
	if raw == "" {
		return nil, false, nil
	}
	if len(raw) > maxClaimsLen {
		return nil, false, fmt.Errorf("claims is longer than %d bytes", maxClaimsLen)
	}
	var req map[string]map[string]*struct {
		Essential bool     `json:"essential"`
		Value     *string  `json:"value"`
		Values    []string `json:"values"`
	}
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return nil, false, fmt.Errorf("claims is not a JSON object of claim requests: %w", err)
	}
	for _, member := range []string{"id_token", "userinfo"} {
		acr := req[member]["acr"]
		if acr == nil {
			continue
		}
		essential = essential || acr.Essential
		if acr.Value != nil {
			values = append(values, *acr.Value)
		}
		values = append(values, acr.Values...)
	}
	return values, essential, nil
}

// ParseAuthorize validates an authorization request (GET query or POST
// form). On failure the error is an *AuthorizeError. When its Redirectable is
// false the client or redirect URI cannot be trusted: render an HTML page and
// never redirect. When it is true, pass it to WriteAuthorizeError (with a nil
// *AuthorizeRequest) to send the error back to the client.
func (p *Provider) ParseAuthorize(ctx context.Context, r *http.Request) (*AuthorizeRequest, error) {
	// A pushed request (RFC 9126) is resolved first: its parameters replace
	// the query. Request objects (RFC 9101) and any other request_uri are not
	// supported; fosite would refuse a request object before it knows the
	// client (an error with no redirect URI): take both parameters out, let
	// fosite validate the rest, and send the RFC's error to the client.
	pushed := false
	if err := r.ParseForm(); err == nil {
		if pushed, err = p.resolvePushed(ctx, r); err != nil {
			return nil, p.authorizeError(ctx, nil, err)
		}
		if err := resourcesAsAudience(r.Form); err != nil {
			return nil, p.authorizeError(ctx, nil, err)
		}
	}
	unsupported := requestObjectParams(r)
	restoreState := p.liftStateMinimum(r)
	far, err := p.fosite.NewAuthorizeRequest(ctx, r)
	restoreState(far)
	if err == nil && len(far.GetState()) < p.cfg.MinParameterLength {
		err = fosite.ErrInvalidState.WithHintf("state must be at least %d characters.", p.cfg.MinParameterLength)
	}
	if unsupported != nil {
		return nil, p.requestObjectRefused(ctx, far, err, unsupported)
	}
	if err != nil {
		return nil, p.authorizeError(ctx, far, err)
	}
	return p.checkAuthorize(ctx, far, pushed)
}

// checkAuthorize applies Gatehouse's rules to an authorization request
// fosite has validated (at /auth/authorize, and at the PAR endpoint when it
// is pushed) and returns it typed. pushed says whether its parameters came
// from a pushed request.
func (p *Provider) checkAuthorize(ctx context.Context, far fosite.AuthorizeRequester, pushed bool) (*AuthorizeRequest, error) {
	c, ok := far.GetClient().(*client)
	if !ok {
		return nil, p.authorizeError(ctx, nil, fosite.ErrServerError.WithDebug("unexpected client type"))
	}
	if c.res.RequirePushedAuthorizationRequests && !pushed {
		return nil, p.authorizeError(ctx, far, fosite.ErrInvalidRequest.WithHint("This client must push its authorization requests (RFC 9126): send them to the pushed authorization request endpoint and bring the request_uri here."))
	}
	// fosite checks the scheme only when it issues the code; refuse earlier,
	// and never send anything to a plain-http non-loopback URI.
	if !fosite.IsRedirectURISecure(ctx, far.GetRedirectURI()) {
		return nil, p.authorizeError(ctx, nil, fosite.ErrInvalidRequest.WithHint("The redirect URI must use https unless it points to this machine."))
	}
	form := far.GetRequestForm()
	if !far.GetResponseTypes().ExactOne("code") {
		return nil, p.authorizeError(ctx, far, fosite.ErrUnsupportedResponseType.WithHint("Only response_type=code is supported."))
	}
	if err := checkPKCEParams(c, form); err != nil {
		return nil, p.authorizeError(ctx, far, err)
	}
	prompt := fosite.RemoveEmpty(strings.Split(form.Get("prompt"), " "))
	for _, v := range prompt {
		if !slices.Contains(p.fcfg.AllowedPromptValues, v) {
			return nil, p.authorizeError(ctx, far, fosite.ErrInvalidRequest.WithHintf("Unknown prompt value %q.", v))
		}
	}
	if slices.Contains(prompt, "none") && len(prompt) > 1 {
		return nil, p.authorizeError(ctx, far, fosite.ErrInvalidRequest.WithHint("prompt=none cannot be combined with other values."))
	}
	maxAge := -1
	if v := form.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, p.authorizeError(ctx, far, fosite.ErrInvalidRequest.WithHint("max_age must be a non-negative number of seconds."))
		}
		maxAge = n
	}
	acrClaim, acrEssential, err := claimsACR(form.Get("claims"))
	if err != nil {
		return nil, p.authorizeError(ctx, far, fosite.ErrInvalidRequest.WithHint(err.Error()))
	}
	if n, min := form.Get("nonce"), p.cfg.MinParameterLength; n != "" && len(n) < min {
		return nil, p.authorizeError(ctx, far, fosite.ErrInsufficientEntropy.WithHintf("nonce must be at least %d characters.", min))
	}
	// There is no account chooser: select_account shows the sign-in form,
	// where the user may sign in with another account, as prompt=login does.
	// Discovery does not list it.
	if i := slices.Index(prompt, "select_account"); i >= 0 {
		prompt = slices.Delete(prompt, i, i+1)
		if !slices.Contains(prompt, "login") {
			prompt = append(prompt, "login")
		}
	}
	q := url.Values{}
	for _, k := range authorizeParams {
		if v, ok := form[k]; ok {
			q[k] = slices.Clone(v)
		}
	}
	return &AuthorizeRequest{
		ClientID:     c.GetID(),
		RedirectURI:  far.GetRedirectURI().String(),
		State:        far.GetState(),
		Nonce:        form.Get("nonce"),
		ResponseType: form.Get("response_type"),
		LoginHint:    form.Get("login_hint"),
		Scopes:       slices.Clone([]string(far.GetRequestedScopes())),
		Prompt:       prompt,
		MaxAge:       maxAge,
		ACRValues:    strings.Fields(form.Get("acr_values")),
		ACRClaim:     acrClaim,
		ACREssential: acrEssential,
		Client:       c.res,
		Query:        q,
		ar:           far,
	}, nil
}

// liftStateMinimum works around fosite's fixed minimum of 8 characters
// for state (fosite.GetMinParameterEntropy never goes below it): RFC 6749
// sets no minimum and makes state optional. A shorter or absent state is
// replaced by a placeholder for fosite's check; the returned func puts the
// client's value back into the form and the parsed request, so the client
// gets its own state back and Config.MinParameterLength decides instead.
func (p *Provider) liftStateMinimum(r *http.Request) func(fosite.AuthorizeRequester) {
	if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return func(fosite.AuthorizeRequester) {}
	}
	orig, had := r.Form["state"]
	if had && len(r.Form.Get("state")) >= fosite.MinParameterEntropy {
		return func(fosite.AuthorizeRequester) {}
	}
	r.Form.Set("state", strings.Repeat("_", fosite.MinParameterEntropy))
	return func(far fosite.AuthorizeRequester) {
		if had {
			r.Form["state"] = orig
		} else {
			r.Form.Del("state")
		}
		// fosite's request shares r.Form and copied state from it.
		if ar, ok := far.(*fosite.AuthorizeRequest); ok {
			ar.State = r.Form.Get("state")
		}
	}
}

// requestObjectParams removes request and request_uri from r's form and
// returns the error that refuses them, or nil when neither was sent. Parsing
// fails here only when fosite's own parsing fails too, which reports it.
func requestObjectParams(r *http.Request) *fosite.RFC6749Error {
	if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return nil
	}
	var refused *fosite.RFC6749Error
	switch {
	case r.Form.Has("request_uri"):
		refused = fosite.ErrRequestURINotSupported.WithHint("Request objects by reference (request_uri, including pushed authorization requests) are not supported; send the parameters in the query.")
	case r.Form.Has("request"):
		refused = fosite.ErrRequestNotSupported.WithHint("Request objects (the request parameter) are not supported; send the parameters in the query.")
	default:
		return nil
	}
	r.Form.Del("request_uri")
	r.Form.Del("request")
	return refused
}

// requestObjectRefused answers a request that carried request or
// request_uri: at the client's redirect URI whenever fosite could validate
// it (even when the rest of the request, which may have lived in the request
// object, is missing), else as a page. An unknown client stays invalid_client.
func (p *Provider) requestObjectRefused(ctx context.Context, far fosite.AuthorizeRequester, err error, refused *fosite.RFC6749Error) *AuthorizeError {
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		var se *storageError
		if errors.As(err, &se) || rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
			return p.authorizeError(ctx, far, err)
		}
	}
	return p.authorizeError(ctx, far, refused)
}

// wantsOffline reports whether a request with these scopes gets a refresh
// token (the client allowing it): OpenID requests only when offline_access
// (or offline) was requested and, when the user chose scopes, kept.
func wantsOffline(requested fosite.Arguments, chosen []string) bool {
	if !requested.Has(scopeOpenID) {
		return true
	}
	for _, s := range []string{scopeOfflineAccess, scopeOffline} {
		if requested.Has(s) && (chosen == nil || slices.Contains(chosen, s)) {
			return true
		}
	}
	return false
}

// checkPKCEParams: S256 only, a well-formed challenge, and a challenge
// whenever the client must use PKCE.
func checkPKCEParams(c *client, form url.Values) error {
	challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return fosite.ErrInvalidRequest.WithHint("code_challenge_method was sent without code_challenge.")
	case challenge == "" && c.requiresPKCE():
		return fosite.ErrInvalidRequest.WithHint("This client must use PKCE: send code_challenge with code_challenge_method=S256.")
	case challenge == "":
		return nil
	case method != "S256":
		return fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256; plain is not supported.")
	case !challengeFormat.MatchString(challenge):
		return fosite.ErrInvalidRequest.WithHint("code_challenge must be the base64url SHA-256 of the code verifier (43 characters).")
	}
	return nil
}

// authorizeError wraps a fosite error. Only a request whose redirect URI
// fosite validated against the client may redirect.
func (p *Provider) authorizeError(ctx context.Context, far fosite.AuthorizeRequester, err error) *AuthorizeError {
	var se *storageError
	if errors.As(err, &se) {
		// fosite reports any failed client lookup as invalid_client; a
		// database outage must not read as "unknown application".
		p.cfg.Logger.ErrorContext(ctx, "authorize request failed", "err", se)
		return &AuthorizeError{Code: "temporarily_unavailable", Description: "The authorization server is temporarily unavailable.",
			err: fosite.ErrTemporarilyUnavailable.WithWrap(err)}
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	redirectable := far != nil && far.IsRedirectURIValid() && far.GetRedirectURI() != nil &&
		fosite.IsRedirectURISecure(ctx, far.GetRedirectURI())
	if rfc.CodeField >= 500 {
		p.cfg.Logger.ErrorContext(ctx, "authorize request failed", "err", rfc.ErrorField, "debug", rfc.GetDescription(), "cause", rfc.Cause())
	}
	e := &AuthorizeError{Redirectable: redirectable, Code: rfc.ErrorField, Description: rfc.GetDescription(), err: rfc}
	if redirectable {
		e.ar = far
	}
	return e
}

// WriteAuthorizeError sends err back to the client's redirect URI. err is an
// *AuthorizeError from ParseAuthorize or CompleteAuthorize, or one of
// ErrLoginRequired, ErrConsentRequired, ErrAccessDenied,
// ErrInteractionRequired (with ar set). When no trusted redirect URI is
// known it writes a plain 400 and never redirects; the hosted pages should
// render their own page in that case.
func (p *Provider) WriteAuthorizeError(w http.ResponseWriter, r *http.Request, ar *AuthorizeRequest, err error) {
	ctx := r.Context()
	var far fosite.AuthorizeRequester
	if ar != nil {
		far = ar.ar
	}
	var ae *AuthorizeError
	if errors.As(err, &ae) {
		if !ae.Redirectable {
			far = nil
		} else if far == nil {
			far = ae.ar
		}
	}
	if far == nil || !far.IsRedirectURIValid() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("The authorization request is invalid.\n"))
		return
	}
	allowFormPost(w, far)
	p.fosite.WriteAuthorizeError(ctx, w, far, toRFCError(err))
}

// toRFCError maps the exported sentinels (and AuthorizeError) to fosite's.
func toRFCError(err error) error {
	var ae *AuthorizeError
	switch {
	case errors.As(err, &ae) && ae.err != nil:
		return ae.err
	case errors.Is(err, ErrLoginRequired):
		return fosite.ErrLoginRequired
	case errors.Is(err, ErrConsentRequired):
		return fosite.ErrConsentRequired
	case errors.Is(err, ErrAccessDenied):
		return fosite.ErrAccessDenied
	case errors.Is(err, ErrInteractionRequired):
		return fosite.ErrInteractionRequired
	case errors.Is(err, ErrUnmetAuthenticationRequirements):
		return errUnmetAuthenticationRequirements.WithHint("The sign-in does not reach the authentication level this request or client requires.")
	}
	return fosite.ErrServerError.WithWrap(err)
}

// CompleteAuthorize issues the code for ar and the user in g and redirects
// to the client (303). Protocol refusals found at this point (max_age not
// met, the user disabled meanwhile) are redirected to the client as OAuth
// errors and CompleteAuthorize returns nil. A non-nil error means nothing was
// written and nothing was issued (the database failed): render an error page
// (503). g.Scopes nil grants every requested scope; otherwise the grant is
// g.Scopes ∩ requested ∩ allowed. Refresh tokens (the offline_access grant)
// need the client's authorization_code settings to have refresh_token: true;
// an OpenID request must also ask for offline_access (OIDC Core §11), a plain
// OAuth request gets one from the client setting alone.
func (p *Provider) CompleteAuthorize(w http.ResponseWriter, r *http.Request, ar *AuthorizeRequest, g Grant) error {
	ctx := r.Context()
	if ar == nil || ar.ar == nil {
		return errors.New("complete authorize: no parsed request")
	}
	far := ar.ar
	c, ok := far.GetClient().(*client)
	if !ok {
		return errors.New("complete authorize: unexpected client type")
	}
	if g.Subject == "" {
		return errors.New("complete authorize: empty subject")
	}
	var u store.User
	var err error
	if g.User != nil && g.User.ID == g.Subject {
		u = *g.User
	} else {
		u, err = p.cfg.Store.GetUser(ctx, g.Subject)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeErr("get user", err)
	}
	if err != nil || u.Inactive {
		allowFormPost(w, far)
		p.fosite.WriteAuthorizeError(ctx, w, far, fosite.ErrAccessDenied.WithHint("The account is not active."))
		return nil
	}

	now := p.now()
	authTime := g.AuthTime.UTC().Truncate(time.Second)
	if g.AuthTime.IsZero() {
		authTime = now.Truncate(time.Second)
	}
	loggedInForThis := !g.LoginRequestedAt.IsZero() && !g.AuthTime.Before(g.LoginRequestedAt)
	if ar.MaxAge >= 0 && !loggedInForThis && authTime.Add(time.Duration(ar.MaxAge)*time.Second).Before(now.Truncate(time.Second)) {
		allowFormPost(w, far)
		p.fosite.WriteAuthorizeError(ctx, w, far, fosite.ErrLoginRequired.WithHint("The sign-in is older than max_age."))
		return nil
	}

	sess := newSession()
	sess.Subject = g.Subject
	sess.UserID = g.Subject
	sess.ClientID = c.GetID()
	sess.GrantType = grantAuthorizationCode
	sess.SessionID = g.SessionID
	claims := sess.IDTokenClaims()
	claims.Subject = g.Subject
	claims.AuthTime = authTime
	claims.AuthenticationMethodsReferences = slices.Clone(g.AMR)
	claims.AuthenticationContextClassReference = g.ACR
	// fosite compares auth_time with the request time for prompt=login
	// ("signed in after the request") and prompt=none ("signed in before").
	// The hosted pages enforce prompt; the request time we report is the one
	// that makes their decision hold: the sign-in itself after a forced login.
	claims.RequestedAt = far.GetRequestedAt().UTC().Truncate(time.Second)
	if slices.Contains(ar.Prompt, "login") {
		claims.RequestedAt = authTime
	}
	if g.SessionID != "" {
		claims.Add("sid", g.SessionID)
	}

	allowed := c.GetScopes()
	for _, s := range far.GetRequestedScopes() {
		if s == scopeOfflineAccess || s == scopeOffline {
			continue
		}
		if (g.Scopes == nil || slices.Contains(g.Scopes, s)) && allowed.Has(s) {
			far.GrantScope(s)
		}
	}
	if c.refreshFor(grantAuthorizationCode) && wantsOffline(far.GetRequestedScopes(), g.Scopes) {
		far.GrantScope(scopeOfflineAccess)
	}
	grantAudience(far, c.GetID())
	far.SetSession(sess)

	// The handlers create the code, PKCE and OpenID records; the batch
	// stores them in one multi-row INSERT, atomic by itself, once all three
	// are known (a refusal midway stores nothing).
	bctx := withWriteBatch(ctx)
	resp, err := p.fosite.NewAuthorizeResponse(bctx, far, sess)
	if err == nil {
		err = p.storage.flushQueued(bctx)
	}
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		var se *storageError
		if errors.As(err, &se) || rfc.CodeField >= 500 {
			p.cfg.Logger.ErrorContext(ctx, "issue authorization code", "client", c.GetID(), "err", rfc.ErrorField, "debug", rfc.Debug(), "cause", rfc.Cause())
			return errors.New("issue authorization code: the authorization server is temporarily unavailable")
		}
		allowFormPost(w, far)
		p.fosite.WriteAuthorizeError(ctx, w, far, rfc)
		return nil
	}
	resp.AddParameter("iss", p.cfg.Issuer) // RFC 9207
	allowFormPost(w, far)
	p.fosite.WriteAuthorizeResponse(ctx, w, far, resp)
	return nil
}
