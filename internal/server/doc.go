// Package server assembles Gatehouse's HTTP surface: it mounts the routes of
// the admin API, the OAuth endpoints and the hosted pages on one ServeMux,
// serves static files, health and metrics, and wraps everything in the
// cross-cutting middleware (request ids, client address, access logs, panic
// recovery, security headers).
package server
