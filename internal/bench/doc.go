// Package bench is the engine of gatehouse-bench: it seeds a running
// Gatehouse through its admin API and hosted pages (clients, users, TOTP
// enrolments), drives the load scenarios over real HTTP on loopback,
// measures the cryptographic floor on the same machine (argon2id, the
// client-secret check, ES256) and reports one table or JSON document.
// cmd/gatehouse-bench is its command line; the smoke test runs it against
// an in-process server.
package bench
