package audit

import "context"

type requestInfoKey struct{}

type requestInfo struct{ id, remoteAddr string }

// WithRequest returns ctx carrying the request id and the client address, set
// once by the server's middleware so every audit event and log line of the
// request can name them without threading them through every call.
func WithRequest(ctx context.Context, requestID, remoteAddr string) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, requestInfo{requestID, remoteAddr})
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	ri, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return ri.id
}

// RemoteAddr returns the client address (IP, no port) carried by ctx, or "".
func RemoteAddr(ctx context.Context) string {
	ri, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return ri.remoteAddr
}
