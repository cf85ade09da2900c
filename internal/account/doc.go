// Package account checks passwords for every way a user signs in (hosted
// login page, password grant, JSON sign-in API): one place that throttles
// failures per account and per client address, hashes a dummy password for
// unknown users, and answers every failure with the same error.
package account
