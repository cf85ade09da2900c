// Package account checks passwords for every way a user signs in (hosted
// login page, password grant, JSON sign-in API): one place that reserves
// each attempt atomically before the hash (per account and address, and
// per address), gives the reservation back on success, hashes a dummy
// password for unknown users, answers unknown and wrong alike (an inactive
// account's owner, who typed the right password, is told it is disabled),
// and a throttled attempt with a ThrottledError that says how long to wait.
// Reserve is the same reserve-first throttle for other secrets (admin
// Basic auth, client secrets).
package account
