package oauth

import (
	"encoding/json"
	"fmt"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/gatehouse/gatehouse/internal/store"
)

// session is the one concrete fosite session type Gatehouse uses, for every
// grant: filled at authorize time (or by the token endpoint for the grants
// without a browser), persisted as JSON in store.OAuthRequest.Session, and
// passed empty as the template wherever fosite asks for one.
type session struct {
	openid.DefaultSession

	// UserID is the resource owner; "" for client_credentials tokens, so
	// that store.DeactivateOAuthRequestsBySubject never touches them.
	UserID string `json:"user_id,omitempty"`
	// ClientID is the client the tokens were issued to.
	ClientID string `json:"client_id,omitempty"`
	// GrantType is the grant that started the token family; a refresh keeps
	// it, so per-grant settings (format, lifespans) follow the family.
	GrantType string `json:"grant_type,omitempty"`
	// SessionID is the browser session (OIDC sid) the family came from.
	SessionID string `json:"sid,omitempty"`
	// RefreshScopes, set by a refresh that narrowed the scope, is the grant
	// the new refresh token keeps (the access token has the narrower one).
	RefreshScopes []string `json:"refresh_scopes,omitempty"`
	// DPoPJKT is the thumbprint of the key the family's tokens are bound
	// to (RFC 9449 cnf.jkt); "" for Bearer tokens.
	DPoPJKT string `json:"dpop_jkt,omitempty"`

	// holder is what the read of the stored record found of UserID's
	// account (store.OAuthRequest.Holder); never stored.
	holder store.HolderState
}

var (
	_ fosite.Session = (*session)(nil)
	_ openid.Session = (*session)(nil)
)

func newSession() *session {
	return &session{DefaultSession: openid.DefaultSession{
		Claims:  &jwt.IDTokenClaims{},
		Headers: &jwt.Headers{},
	}}
}

// Clone must return *session (DefaultSession.Clone would return the embedded
// type and lose our fields). A JSON round trip is the persisted form anyway.
func (s *session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("clone oauth session: %v", err)) // only plain data inside
	}
	c := newSession()
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("clone oauth session: %v", err))
	}
	c.holder = s.holder
	return c
}

// sessionOf returns r's session as *session, or a fresh one if r carries
// another type (which would be a wiring bug, never user input).
func sessionOf(r fosite.Requester) *session {
	if r == nil {
		return newSession()
	}
	if s, ok := r.GetSession().(*session); ok && s != nil {
		return s
	}
	return newSession()
}
