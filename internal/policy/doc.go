// Package policy owns the effective policy of a sign-in: which AuthConfig
// applies to a Client (its reference, else `default`, else the only one,
// else the built-in defaults) and the rules that follow from the two
// together (is a second factor required, the TOTP window, where codes are
// delivered). It is resolved here once and cached here once, for a short
// time and forgotten at once when the admin API changes a Client or an
// AuthConfig; every surface (hosted pages, JSON API, token endpoint) asks
// this package instead of reading the resources itself.
package policy
