// Package argon2id is golang.org/x/crypto/argon2 (v0.58.0), Argon2id only,
// changed in one way: a hash runs in a caller's reusable Memory instead of a
// fresh allocation of its whole memory cost. The password hasher keeps one
// Memory per hashing slot, so a burst of logins reuses a few 19 MiB work
// areas instead of leaving one for the collector per login — the difference
// between ~160 MiB and well under 100 MiB of peak RSS, and no page faults on
// the login path.
//
// The first pass over memory overwrites blocks where upstream XORs into
// zeroed memory (the same result), which is what makes reuse without zeroing
// correct; tests compare every output with upstream's. The blamka assembly
// is upstream's, unchanged. Copyright The Go Authors, BSD licence (LICENSE).
package argon2id
