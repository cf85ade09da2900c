package twofactor

import "strings"

// MaskDestination hides most of a phone number or e-mail address for pages,
// API answers and audit details: "+1•••••4567", "a•••@example.com".
func MaskDestination(d string) string {
	if local, domain, ok := strings.Cut(d, "@"); ok {
		r := []rune(local)
		if len(r) == 0 {
			return "•••@" + domain
		}
		return string(r[0]) + "•••@" + domain
	}
	r := []rune(d)
	if len(r) <= 6 {
		return strings.Repeat("•", len(r))
	}
	return string(r[:2]) + strings.Repeat("•", len(r)-6) + string(r[len(r)-4:])
}
