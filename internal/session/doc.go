// Package session owns the browser session of the hosted pages: a
// gorilla/sessions cookie, signed and encrypted with keys derived from the
// master secret, that carries only a random session id, and the server-side
// record it names (store.BrowserSession, keyed by the SHA-256 of that id so a
// database dump yields no usable cookie). It rotates the id at login, deletes
// the record at logout, enforces idle and absolute expiry, keeps the typed
// state of a login in progress (the parked authorization request, a password
// accepted while the second factor is pending, a TOTP enrolment) and issues
// and checks the per-session CSRF token. A request reads its record once and
// writes it at most once: setters that change nothing write nothing, the
// sliding of the idle expiry (at most once a minute) rides on the request's
// own write or on Settle at its end, and a rotation is one UPDATE of the key.
//
// A session without a user (a visitor: the login page, a parked
// authorization request) has no record: its whole state is sealed into the
// cookie by the same codec, so showing the login page costs no statement.
// Signing in moves it to a record under a new id (Rotate); a replayed
// visitor cookie carries no user, so everything that can be revoked stays
// server-side.
package session
