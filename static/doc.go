// Package static holds the hosted pages' assets (the stylesheet), embedded in
// the binary and served by the server under /static/. Nothing here loads
// anything from another origin.
package static
