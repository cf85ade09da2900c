package notify

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// FuzzIsPublicAddr checks the SSRF guard on arbitrary addresses: it never
// passes a loopback, private, link-local, multicast or unspecified
// address, and an IPv4 address gets the same verdict in every IPv6 form
// that carries it (mapped, NAT64, 6to4).
func FuzzIsPublicAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "169.254.169.254", "8.8.8.8", "::1", "::ffff:127.0.0.1", "64:ff9b::a00:1",
		"2002:a00:1::", "fe80::1", "fc00::1", "2606:4700::1111", "0.0.0.0", "100.64.0.1", "192.0.0.8", "ff02::1"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 && len(b) != 4 {
			return
		}
		addr, _ := netip.AddrFromSlice(b)
		pub := IsPublicAddr(addr)
		u := addr.Unmap()
		if pub && (u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsMulticast() || u.IsUnspecified()) {
			t.Fatalf("%s passed as public", addr)
		}
		if u.Is4() {
			v4 := u.As4()
			mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
			nat64 := netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
			sixToFour := netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3]})
			for _, other := range []netip.Addr{mapped, nat64, sixToFour} {
				if IsPublicAddr(other) != pub {
					t.Fatalf("%s is public=%v but %s is public=%v", u, pub, other, !pub)
				}
			}
		}
	})
}

// FuzzValidateEndpoint: any string is either refused with ErrRefused or
// is an https URL whose literal host, if any, is public and not localhost.
func FuzzValidateEndpoint(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/x", "http://hooks.example.com", "https://127.0.0.1/", "https://[::1]:8443/",
		"https://localhost/", "https://a.localhost./", "https://user:pw@8.8.8.8/", "https://0x7f000001/", "https://2130706433/",
		"https://[::ffff:10.0.0.1]/", "javascript:alert(1)", "https://%31%32%37.0.0.1/", "https://8.8.8.8:0/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := ValidateEndpoint(context.Background(), raw, false, nil)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%q: error %v is not ErrRefused", raw, err)
			}
			return
		}
		u, perr := parseEndpoint(raw, false)
		if perr != nil || u.Scheme != "https" {
			t.Fatalf("%q accepted but is not an https URL", raw)
		}
		if a, aerr := netip.ParseAddr(u.Hostname()); aerr == nil && !IsPublicAddr(a) {
			t.Fatalf("%q accepted with the non-public address %s", raw, a)
		}
	})
}
