// Package passkey runs WebAuthn ceremonies — registration, a passkey as a
// second factor, passwordless sign-in with a discoverable credential — with
// github.com/go-webauthn/webauthn, which parses and verifies every browser
// answer; Gatehouse writes none of that by hand. It keeps the relying
// party's settings (an AuthConfig's `webauthn`, defaulting from the public
// URL), the credentials (public keys, counters, flags; nothing secret) and
// the ceremony challenges (single use, 5 minutes, bound to the sign-in or
// session that asked) in the Store. No HTTP, no fosite: the sign-in engine's
// passkey factor and the surfaces call it.
package passkey
