// Package signin owns the sign-in as a state machine, for every surface at
// once: the hosted pages, the JSON sign-in API and the password grant are
// adapters that turn HTTP into calls here and the results into HTML or
// JSON. It has no HTTP and no fosite in it.
//
// A sign-in goes: first factor (the password; the surfaces check it with
// package account) → Begin, which decides from the user's factors and the
// policy (package policy: Client → AuthConfig → defaults) whether it is
// complete, owes a second factor (with the offers), or owes an enrolment →
// Park, which stores the unfinished sign-in server-side (an expiring,
// sealed ticket bound to the client, whose row makes completion single-use
// on any process) → Prepare (send a code, open a challenge) → Attempt
// (check an answer; a success completes the ticket exactly once) →
// Result, with amr, acr and auth_time.
//
// Factors implement one interface (Factor) and sit in one registry: TOTP,
// SMS code, e-mail code, recovery code and any factor an embedding program
// registers. Lockout, attempt counting, replay refusal and audit events are
// not the factors' business: every answer goes through the one attempt
// counter of package twofactor (Service.Guard), whatever factor and surface
// it came from.
package signin
