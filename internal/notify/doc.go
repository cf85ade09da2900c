// Package notify delivers two-factor codes to the webhook an AuthConfig names
// (an SMS or e-mail gateway run by the operator). It owns the payload and its
// HMAC signature, the per-hook timeout, bounded background retries with
// exponential backoff, and the SSRF guard: endpoints must be https and every
// address actually dialled must be public, so neither a saved URL nor a DNS
// answer that changes after the save can reach internal hosts. Codes never
// appear in its logs or errors.
package notify
