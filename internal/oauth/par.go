package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Pushed authorization requests (RFC 9126). A client POSTs its
// authorization parameters to PathPAR, authenticated as at the token
// endpoint; fosite validates them as an authorization request and stores
// them (CreatePARSession) under a random request_uri, which the browser then
// brings to /auth/authorize with the client_id. ParseAuthorize resolves it
// once (resolvePushed) and replaces the query with the pushed parameters.
//
// The hosted pages park an authorization request while the user signs in
// and resume it by replaying its query (AuthorizeRequest.Query). A pushed
// request's query carries pushedMarkParam, a MAC over its parameters and an
// expiry, so that the replay still counts as pushed for a Client with
// require_pushed_authorization_requests while a query made up by anyone
// else does not.

const (
	// PathPAR is the pushed authorization request endpoint.
	PathPAR = "/auth/par"
	// PushedRequestLifespan is how long a request_uri can start an
	// authorization: enough for a redirect, short enough to be useless
	// when leaked (RFC 9126 §2.2 suggests 5 to 600 seconds).
	PushedRequestLifespan = 90 * time.Second
	requestURIPrefix      = "urn:ietf:params:oauth:request_uri:"
	// pushedMarkParam carries the pushed mark in a resumed query.
	pushedMarkParam = "gh_pushed"
	// pushedMarkLifespan outlives the hosted pages' parked request
	// (session.PendingAuthorizeTTL, 30 minutes).
	pushedMarkLifespan = time.Hour
)

var errPushedRequestUnknown = fosite.ErrInvalidRequestURI.WithHint("The request_uri is unknown, was used already, or has expired; push the authorization request again.")

// handlePAR is POST /auth/par.
func (p *Provider) handlePAR(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err == nil {
		if err := resourcesAsAudience(r.Form); err != nil {
			p.writeTokenError(ctx, w, r, nil, err)
			return
		}
		if r.Form.Has("request") {
			p.writeTokenError(ctx, w, r, nil, fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; push the parameters themselves."))
			return
		}
	}
	restoreState := p.liftStateMinimum(r)
	far, err := p.fosite.NewPushedAuthorizeRequest(ctx, r)
	restoreState(far)
	if err == nil {
		_, err = p.checkAuthorize(ctx, far, true)
	}
	if err != nil {
		var ae *AuthorizeError
		if errors.As(err, &ae) {
			err = ae.err
		}
		p.writeTokenError(ctx, w, r, nil, err)
		return
	}
	resp, err := p.fosite.NewPushedAuthorizeResponse(ctx, far, newSession())
	if err != nil {
		p.writeTokenError(ctx, w, r, nil, err)
		return
	}
	p.fosite.WritePushedAuthorizeResponse(ctx, w, far, resp)
}

// pushedParams are the parameters a pushed request keeps: the authorization
// parameters only (never client_secret or a client assertion).
func pushedParams(form url.Values, clientID string) url.Values {
	out := url.Values{}
	for _, k := range authorizeParams {
		if v, ok := form[k]; ok && k != pushedMarkParam {
			out[k] = append([]string(nil), v...)
		}
	}
	out.Set("client_id", clientID)
	return out
}

func pushedSignature(requestURI string) string {
	h := sha256.Sum256([]byte(requestURI))
	return hex.EncodeToString(h[:])
}

// CreatePARSession stores a validated pushed request (fosite.PARStorage).
func (s *fositeStore) CreatePARSession(ctx context.Context, requestURI string, ar fosite.AuthorizeRequester) error {
	now := s.p.now()
	rec := store.OAuthRequest{
		Kind:        store.KindPushed,
		Signature:   pushedSignature(requestURI),
		RequestID:   ar.GetID(),
		ClientID:    ar.GetClient().GetID(),
		RequestedAt: now,
		ExpiresAt:   now.Add(PushedRequestLifespan),
		Active:      true,
		Form:        pushedParams(ar.GetRequestForm(), ar.GetClient().GetID()).Encode(),
		Session:     []byte("{}"),
	}
	if err := s.st().CreateOAuthRequest(ctx, rec); err != nil {
		return storeErr("store pushed authorization request", err)
	}
	return nil
}

// GetPARSession returns the pushed request under requestURI while it is
// valid (fosite.PARStorage, which fosite's PAR handler requires whole;
// ParseAuthorize resolves pushed requests itself, see resolvePushed, so
// that their single use is atomic).
func (s *fositeStore) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	rec, err := s.p.readPushed(ctx, requestURI)
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(rec.Form)
	if err != nil {
		return nil, errorsx.WithStack(errPushedRequestUnknown.WithWrap(err))
	}
	c, err := s.p.getClient(ctx, rec.ClientID, "")
	if err != nil {
		return nil, err
	}
	ar := fosite.NewAuthorizeRequest()
	ar.ID, ar.Client, ar.Form, ar.RequestedAt = rec.RequestID, c, form, rec.RequestedAt
	ar.State = form.Get("state")
	ar.ResponseTypes = fosite.RemoveEmpty(strings.Split(form.Get("response_type"), " "))
	ar.ResponseMode = fosite.ResponseModeType(form.Get("response_mode"))
	ar.RequestedScope = fosite.RemoveEmpty(strings.Split(form.Get("scope"), " "))
	if ar.RedirectURI, err = url.Parse(form.Get("redirect_uri")); err != nil {
		return nil, errorsx.WithStack(errPushedRequestUnknown.WithWrap(err))
	}
	return ar, nil
}

// DeletePARSession deletes the pushed request under requestURI.
func (s *fositeStore) DeletePARSession(ctx context.Context, requestURI string) error {
	if _, err := s.st().DeleteOAuthRequests(ctx, pushedSignature(requestURI), []store.OAuthKind{store.KindPushed}); err != nil {
		return storeErr("delete pushed authorization request", err)
	}
	return nil
}

// readPushed reads the unexpired pushed request under requestURI.
func (p *Provider) readPushed(ctx context.Context, requestURI string) (store.OAuthRequest, error) {
	rec, err := p.cfg.Store.GetOAuthRequest(ctx, store.KindPushed, pushedSignature(requestURI))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return rec, errorsx.WithStack(errPushedRequestUnknown)
	case err != nil:
		return rec, storeErr("get pushed authorization request", err)
	case !p.now().Before(rec.ExpiresAt):
		return rec, errorsx.WithStack(errPushedRequestUnknown)
	}
	return rec, nil
}

// resolvePushed replaces the parameters of an authorization request that
// names a pushed request (request_uri) with the pushed ones, using the
// pushed request up, and reports whether the parameters are pushed: just
// resolved, or a resumed query whose pushed mark verifies. Parameters sent
// beside request_uri are ignored (RFC 9126 §4), except client_id, which
// must name the client that pushed.
func (p *Provider) resolvePushed(ctx context.Context, r *http.Request) (bool, error) {
	uri := r.Form.Get("request_uri")
	if !strings.HasPrefix(uri, requestURIPrefix) {
		return p.pushedMarkValid(r.Form), nil
	}
	rec, err := p.readPushed(ctx, uri)
	if err != nil {
		return false, err
	}
	if cid := r.Form.Get("client_id"); cid != rec.ClientID {
		return false, errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("The client_id must be the one that pushed the authorization request."))
	}
	// Single use: of two requests racing with one request_uri, one deletes it.
	n, err := p.cfg.Store.DeleteOAuthRequests(ctx, rec.Signature, []store.OAuthKind{store.KindPushed})
	if err != nil {
		return false, storeErr("use pushed authorization request", err)
	}
	if n == 0 {
		return false, errorsx.WithStack(errPushedRequestUnknown)
	}
	params, err := url.ParseQuery(rec.Form)
	if err != nil {
		return false, errorsx.WithStack(errPushedRequestUnknown.WithWrap(err))
	}
	params.Set(pushedMarkParam, p.pushedMark(params, p.now().Add(pushedMarkLifespan)))
	r.Form = params
	if r.Method == http.MethodPost {
		r.PostForm = url.Values{}
	}
	return true, nil
}

// pushedMark is "<expiry>.<MAC>" over the pushed parameters.
func (p *Provider) pushedMark(params url.Values, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + base64.RawURLEncoding.EncodeToString(p.pushedMAC(params, e))
}

func (p *Provider) pushedMAC(params url.Values, exp string) []byte {
	m := hmac.New(sha256.New, p.pushedKey)
	m.Write([]byte(exp))
	m.Write([]byte{'\n'})
	m.Write([]byte(pushedParams(params, params.Get("client_id")).Encode()))
	return m.Sum(nil)
}

// pushedMarkValid reports whether form carries an unexpired mark that
// matches its parameters.
func (p *Provider) pushedMarkValid(form url.Values) bool {
	mark := form.Get(pushedMarkParam)
	e, sig, ok := strings.Cut(mark, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || !p.now().Before(time.Unix(exp, 0)) {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, p.pushedMAC(form, e))
}
