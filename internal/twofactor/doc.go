// Package twofactor owns second factors: TOTP enrolment (secret, otpauth URI,
// QR code), replay-safe verification with a shared lockout counter, recovery
// codes, SMS/e-mail one-time codes delivered through the notify webhook, and
// disabling or resetting a factor. It works on store.Store and knows nothing
// of HTTP: the hosted pages and the APIs call it and render its results.
//
// Every wrong, malformed, replayed or locked-out code ends in an error that
// matches ErrInvalidCode, so callers show one message for all of them.
// Verification reserves an attempt in the store before it checks anything,
// which commits the failure counter on its own: do not call Verify inside a
// transaction that the caller may roll back.
package twofactor
