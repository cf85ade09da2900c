package resource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/notify"
)

// IsPublicIP reports whether ip is a globally routable unicast address, i.e.
// one a server-side request (a webhook) may connect to. The classification
// is notify's, so that the check at save time and the one at dial time can
// never disagree.
func IsPublicIP(ip net.IP) bool { return notify.IsPublicIP(ip) }

// IsPublicAddr is IsPublicIP for netip.Addr.
func IsPublicAddr(a netip.Addr) bool { return notify.IsPublicAddr(a) }

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
