// Package web serves Gatehouse's hosted browser pages: the authorization
// endpoint's interactive side (sign-in, second-factor prompt or enrolment
// when a second factor is required, consent), the login page that also
// accepts authorization parameters directly (as Aidbox documents), the
// two-step verification settings (status, TOTP enrolment with its QR code,
// codes by text message or e-mail to a destination verified there and then,
// switching between methods, disabling, new recovery codes, all behind a
// recent password and, when a factor is on, a current code of it), and
// RP-initiated logout. Handlers stay thin: they load the browser session
// (internal/session), make one call into the domain (account, twofactor,
// oauth, store), and render an embedded template or redirect. Every page
// carries the security headers and the client's AuthConfig theme; every
// POST form carries the session's CSRF token.
package web
