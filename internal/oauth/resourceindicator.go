package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"
)

// Resource indicators (RFC 8707): a client names the resource server a
// token is for with `resource`, and the access token's aud says so. The
// resource servers a client may ask for are its `audience` list; without
// `resource`, tokens are for the client itself, as before.

// errInvalidTarget is RFC 8707 §2's refusal of a resource.
var errInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource is invalid, unknown, or not one this client may ask for.",
	CodeField:        http.StatusBadRequest,
}

// maxResources bounds the resource parameters of one request.
const maxResources = 10

// resourcesAsAudience checks the `resource` parameters of form (absolute
// URIs without a fragment) and hands them to fosite as its `audience`
// parameter, which fosite checks against the client's audience
// (audienceStrategy) and keeps with the grant.
func resourcesAsAudience(form url.Values) error {
	rs := form["resource"]
	if len(rs) == 0 {
		return nil
	}
	if len(rs) > maxResources {
		return errorsx.WithStack(errInvalidTarget.WithHintf("At most %d resource parameters.", maxResources))
	}
	for _, v := range rs {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsAny(v, " #") {
			return errorsx.WithStack(errInvalidTarget.WithHint("A resource must be an absolute URI without a fragment."))
		}
	}
	form["audience"] = append(form["audience"], rs...)
	return nil
}

// audienceStrategy is fosite's exact audience match, refusing with
// invalid_target as RFC 8707 asks.
func audienceStrategy(allowed, requested []string) error {
	if err := fosite.ExactAudienceMatchingStrategy(allowed, requested); err != nil {
		return errorsx.WithStack(errInvalidTarget.WithHint("The client may not ask for this resource."))
	}
	return nil
}

// grantAudience grants the requested resources (fosite checked them), or
// else the client itself.
func grantAudience(r fosite.Requester, clientID string) {
	aud := r.GetRequestedAudience()
	if len(aud) == 0 {
		r.GrantAudience(clientID)
		return
	}
	for _, a := range aud {
		r.GrantAudience(a)
	}
}

// narrowAudience checks the `resource` of a code or refresh token request:
// RFC 8707 §2.2 lets the token request pick among the resources the
// authorization named (or, when it named none, among the client's
// audience). fosite carries the authorization's audience over: a refresh
// has it granted by now and is narrowed here; a code is granted it only
// while its tokens are made, and codeAudience narrows it there.
func narrowAudience(ar fosite.AccessRequester, c *client) error {
	rs := ar.GetRequestForm()["resource"]
	if len(rs) == 0 {
		return nil
	}
	authorized := ar.GetRequestedAudience()
	for _, v := range rs {
		if !slices.Contains(c.GetAudience(), v) || len(authorized) > 0 && !slices.Contains(authorized, v) {
			return errorsx.WithStack(errInvalidTarget.WithHint("The resource was not part of this grant."))
		}
	}
	if ar.GetGrantTypes().ExactOne(grantRefreshToken) {
		req, ok := ar.(*fosite.AccessRequest)
		if !ok {
			return errorsx.WithStack(fosite.ErrServerError.WithDebug("unexpected access request type"))
		}
		req.GrantedAudience = fosite.Arguments(slices.Clone(rs))
	}
	return nil
}

// codeAudience is the code grant's token handler with the token request's
// `resource` (checked by narrowAudience) as the only audience fosite may
// grant while it makes the tokens.
type codeAudience struct {
	fosite.TokenEndpointHandler
}

func (h codeAudience) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if rs := ar.GetRequestForm()["resource"]; len(rs) > 0 {
		ar = audienceFilter{AccessRequester: ar, only: rs}
	}
	return h.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, ar, resp)
}

// audienceFilter grants only the audiences in only.
type audienceFilter struct {
	fosite.AccessRequester
	only []string
}

func (f audienceFilter) GrantAudience(a string) {
	if slices.Contains(f.only, a) {
		f.AccessRequester.GrantAudience(a)
	}
}
