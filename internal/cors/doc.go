// Package cors owns the cross-origin rules of the endpoints browsers call
// from a single-page app (the JSON sign-in API and the OAuth token,
// revocation, introspection and userinfo endpoints): an origin is allowed
// only when a Client lists it in allowed_origins, answers name that one
// origin (never a wildcard), and no cookies are involved.
package cors
