package server

import (
	"net"
	"net/http/httptest"
	"testing"
)

// TestTheClientAddressBehindProxies: throttles and audit count per client
// address, so only configured proxies may name it, in the configured
// header, and a client cannot name itself by sending the header.
func TestTheClientAddressBehindProxies(t *testing.T) {
	_, proxies, _ := net.ParseCIDR("10.0.0.0/8")
	_, v6, _ := net.ParseCIDR("fd00::/8")
	tests := []struct {
		name, header, peer string
		headers            map[string]string
		want               string
	}{
		{"a direct client is its peer address, whatever it sends", "", "203.0.113.7:5000",
			map[string]string{"X-Forwarded-For": "198.51.100.1"}, "203.0.113.7"},
		{"a trusted proxy names the client", "", "10.0.0.2:5000",
			map[string]string{"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"},
		{"a chain of trusted proxies is walked from the right", "", "10.0.0.2:5000",
			map[string]string{"X-Forwarded-For": "198.51.100.1, 10.0.0.9, 10.1.2.3"}, "198.51.100.1"},
		{"an address the client put in front of the proxy's is not believed", "", "10.0.0.2:5000",
			map[string]string{"X-Forwarded-For": "192.0.2.66, 198.51.100.1"}, "198.51.100.1"},
		{"a trusted proxy without the header is the client", "", "10.0.0.2:5000", nil, "10.0.0.2"},
		{"garbage in the header stops the walk at the last trusted hop", "", "10.0.0.2:5000",
			map[string]string{"X-Forwarded-For": "not-an-ip"}, "10.0.0.2"},
		{"IPv6 proxies and clients", "", "[fd00::1]:443",
			map[string]string{"X-Forwarded-For": "2001:db8::5"}, "2001:db8::5"},
		{"a configured one-address header is read", "X-Real-IP", "10.0.0.2:5000",
			map[string]string{"X-Real-IP": "198.51.100.4", "X-Forwarded-For": "192.0.2.66"}, "198.51.100.4"},
		{"with another header configured X-Forwarded-For is ignored", "CF-Connecting-IP", "10.0.0.2:5000",
			map[string]string{"X-Forwarded-For": "192.0.2.66"}, "10.0.0.2"},
		{"the configured header from an untrusted peer is ignored", "X-Real-IP", "203.0.113.7:5000",
			map[string]string{"X-Real-IP": "198.51.100.4"}, "203.0.113.7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{TrustedProxies: []*net.IPNet{proxies, v6}, ClientIPHeader: tc.header}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := s.clientAddr(r); got != tc.want {
				t.Fatalf("client address %q, want %q", got, tc.want)
			}
		})
	}
}
