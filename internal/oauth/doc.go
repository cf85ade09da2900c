// Package oauth is Gatehouse's OAuth 2.0 / OpenID Connect protocol layer and
// the only importer of github.com/ory/fosite (and of go-jose for keys).
//
// It composes fosite from exactly the handlers Gatehouse uses (authorization
// code, PKCE, refresh, client credentials, password, the mfa-otp grant,
// OpenID Connect explicit and refresh, ID tokens for the password grants,
// introspection, revocation), adapts fosite's storage to
// store.Store, turns resource.Client into fosite clients (one view per
// grant, since the Aidbox Client sets secrets, lifespans and token formats
// per grant), keeps the ES256 signing keys (sealed in the database, shared by
// every process, rotated on demand) and serves the token, introspection,
// revocation, userinfo and discovery endpoints. The hosted login pages
// (internal/web) drive the authorization endpoint through ParseAuthorize,
// CompleteAuthorize and WriteAuthorizeError.
//
// Rules worth knowing:
//   - PKCE is S256 only, required for public clients and for clients with
//     auth.authorization_code.pkce: true. A failed verifier burns the code.
//   - state is required (at least 8 characters, fosite's rule).
//   - Refresh tokens are issued exactly when the grant's settings say
//     refresh_token: true; offline_access is then granted automatically.
//     Rotation is strict: reusing a rotated refresh token revokes the family.
//   - client_credentials tokens carry only scopes listed on the Client, so
//     gatehouse:admin only when listed there.
//   - The password grant of a user with a second factor (Config.TwoFactor)
//     answers 403 {"error":"mfa_required","mfa_token":…} and sends the code
//     through the AuthConfig's webhook; the client then repeats the request
//     with `otp`, or uses grant_type urn:gatehouse:grant-type:mfa-otp with
//     `mfa_token` and `otp` (GrantMFAOTP; the client needs grant type
//     password, and the tokens are a password-grant family). A wrong code
//     is invalid_grant "invalid code" and counts toward the user's lockout;
//     password and mfa-otp grants carry an ID token when openid is granted.
//   - IssueTokens issues tokens through the same handlers for the JSON
//     sign-in API; VerifyUserToken checks a user's Bearer token.
//   - Access tokens are ES256 JWTs (typ at+jwt, RFC 9068) for token_format
//     jwt, opaque HMAC tokens otherwise; both are stored, so revocation and
//     disabling a user apply to both.
//   - Database work per request is kept to one round trip per kind of work
//     (records.go): the protocol endpoints memoise, for the request only,
//     the clients and stored records fosite asks for repeatedly; a code is
//     read with its PKCE and OpenID records; the records a flow creates are
//     stored in one INSERT when its transaction commits.
package oauth
