package resource

import (
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// Cost bounds for an imported passwordHash. The floor is OWASP's weakest
// recommended argon2id setting (m=7 MiB with t=5, i.e. 35,840 KiB-passes of
// work): anything cheaper makes a stolen database cheap to crack, and an
// import would silently lower the protection the operator configured. The
// ceiling keeps one login from claiming an unbounded amount of memory or CPU
// (hashes run GOMAXPROCS at a time, each with its own m): 256 MiB covers
// libsodium's "moderate" profile and every common default.
const (
	minImportMemoryKiB   = 7 * 1024
	minImportWork        = 7 * 1024 * 5
	maxImportMemoryKiB   = 256 * 1024
	maxImportIterations  = 16
	maxImportParallelism = 16
)

// CheckPasswordHashCost checks the cost parameters of an imported argon2id
// PHC string (User.passwordHash; Validate has already checked its form)
// against sane bounds. configured are the server's own hashing parameters:
// a server configured below the floor (a test server, say) accepts hashes as
// cheap as its own, and one configured above the ceiling accepts hashes as
// costly as its own.
func CheckPasswordHashCost(phc string, configured secret.Argon2Params) error {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || !secret.IsPHC(phc) {
		return Invalid("passwordHash", CodeInvalid, "not an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)")
	}
	var m, t, p uint64
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return Invalid("passwordHash", CodeInvalid, "unreadable cost parameters")
	}
	cm, ct, cp := uint64(configured.MemoryKiB), uint64(configured.Iterations), uint64(configured.Parallelism)
	minMem, minWork := min(minImportMemoryKiB, cm), min(minImportWork, cm*ct)
	maxMem, maxT, maxP := max(maxImportMemoryKiB, cm), max(maxImportIterations, ct), max(maxImportParallelism, cp)
	switch {
	case m < minMem || m*t < minWork:
		return Invalid("passwordHash", CodeInvalid, fmt.Sprintf(
			"argon2id cost m=%d,t=%d is too cheap: at least m=%d KiB and m×t=%d (OWASP's minimum, or this server's own setting if lower)",
			m, t, minMem, minWork))
	case m > maxMem || t > maxT || p > maxP:
		return Invalid("passwordHash", CodeInvalid, fmt.Sprintf(
			"argon2id cost m=%d,t=%d,p=%d is too high: at most m=%d KiB, t=%d, p=%d",
			m, t, p, maxMem, maxT, maxP))
	}
	return nil
}
