package resource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// nonPublic lists the ranges a webhook must never reach: loopback, private,
// link-local, shared (CGNAT), documentation, benchmarking, multicast,
// reserved, and the IPv6 transition prefixes that embed or translate to IPv4
// addresses (whose target could be any of the above).
var nonPublic = func() []netip.Prefix {
	cidrs := []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	}
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		out[i] = netip.MustParsePrefix(c)
	}
	return out
}()

// IsPublicIP reports whether ip is a globally routable unicast address, i.e.
// one a server-side request (a webhook) may connect to. IPv4-mapped IPv6
// addresses are judged by their IPv4 address. The notify package checks the
// dialled address with it as well.
func IsPublicIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	return IsPublicAddr(a)
}

// IsPublicAddr is IsPublicIP for netip.Addr.
func IsPublicAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return a.IsGlobalUnicast()
}

// LookupIPFunc resolves a host name to addresses.
type LookupIPFunc func(ctx context.Context, host string) ([]net.IP, error)

// resolveTimeout bounds the save-time lookup of a webhook host.
const resolveTimeout = 2 * time.Second

var errPrivateHost = errors.New("address is not public")

// checkPublicHost refuses hosts that are or resolve to non-public addresses.
// A host that does not resolve now is accepted: the notify package checks
// the address again at dial time, and a save should not depend on DNS.
func checkPublicHost(ctx context.Context, host string, lookup LookupIPFunc) error {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return fmt.Errorf("%s: %w (loopback)", host, errPrivateHost)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !IsPublicAddr(a) {
			return fmt.Errorf("%s: %w", host, errPrivateHost)
		}
		return nil
	}
	if looksNumeric(h) {
		// 127.1, 0x7f.0.0.1, 2130706433: not an address Go parses, but some
		// resolvers do. Refuse rather than guess.
		return fmt.Errorf("%s: not a canonical IP address", host)
	}
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]net.IP, error) {
			return net.DefaultResolver.LookupIP(ctx, "ip", host)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := lookup(ctx, h)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if !IsPublicIP(ip) {
			return fmt.Errorf("%s resolves to %s: %w", host, ip, errPrivateHost)
		}
	}
	return nil
}

func looksNumeric(h string) bool {
	if h == "" {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		l := strings.TrimPrefix(label, "0x")
		if l == "" {
			continue
		}
		for _, r := range l {
			isHex := (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f')
			if !isHex {
				return false
			}
		}
		if label == l && strings.Trim(l, "0123456789") != "" {
			return false // letters without 0x: an ordinary label such as "cafe"
		}
	}
	return true
}
