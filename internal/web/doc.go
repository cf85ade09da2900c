// Package web serves Gatehouse's hosted browser pages: the authorization
// endpoint's interactive side (sign-in, second-factor prompt, consent), the
// login page that also accepts authorization parameters directly (as Aidbox
// documents), and RP-initiated logout. Handlers stay thin: they load the
// browser session (internal/session), make one call into the domain
// (account, oauth, store), and render an embedded template or redirect.
// Every page carries the security headers and the client's AuthConfig theme;
// every POST form carries the session's CSRF token.
package web
