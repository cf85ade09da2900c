// Package secret owns Gatehouse's small cryptographic toolkit: argon2id
// password hashing in PHC form (a bounded number of hashes running at once,
// each in a kept work area: see the argon2id subpackage), AES-256-GCM sealing of data at rest, keys derived from the master
// secret, keyed hashes for high-entropy codes, and random tokens and digits.
// It sits at the bottom of the import graph beside store and knows nothing of
// HTTP or storage.
package secret
