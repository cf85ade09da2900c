// Package admin serves the resource REST API (PUT/GET/DELETE /User, /Client,
// /AuthConfig and their listings, GET /AuditEvent) behind admin
// authentication (HTTP Basic with the bootstrap credentials, or a Bearer token
// carrying the gatehouse:admin scope). Handlers only parse and render; the
// write rules (validation, hashing, optimistic concurrency, ending a user's
// sessions when the password, status or second factor changes, the
// AuthConfig's twoFactor.defaultMethod for users it creates, the
// verification codes a User write spends and the SMS or e-mail codes an
// admin turns on, audit events) live in the service half of Handler, which
// `gatehouse apply` uses too.
package admin
