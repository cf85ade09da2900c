// Package oauth is Gatehouse's OAuth 2.0 / OpenID Connect protocol layer and
// the only importer of github.com/ory/fosite (and of go-jose for keys). It
// composes fosite from the factories Gatehouse needs, adapts fosite's storage
// interfaces to store.Store, turns resource.Client into fosite clients, keeps
// the ES256 signing keys (sealed in the database, rotated on demand) and
// serves the token, introspection, revocation, userinfo and discovery
// endpoints. The hosted login pages (internal/web) drive the authorization
// endpoint through ParseAuthorize / CompleteAuthorize / WriteAuthorizeError.
package oauth
