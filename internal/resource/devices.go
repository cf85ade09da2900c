package resource

import (
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Device is a remembered browser as the APIs show it (the user's
// /auth/devices and the admin's /User/{id}/$devices). Its token is never
// shown: only the browser's cookie holds it.
type Device struct {
	ID         string     `json:"id" yaml:"id"`
	Label      string     `json:"label,omitempty" yaml:"label,omitempty"`
	Strategy   string     `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	CreatedAt  time.Time  `json:"createdAt" yaml:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty" yaml:"lastUsedAt,omitempty"`
	ExpiresAt  time.Time  `json:"expiresAt" yaml:"expiresAt"`
}

// DevicesFromStore is the API view of stored devices.
func DevicesFromStore(ds []store.RememberedDevice) []Device {
	out := make([]Device, 0, len(ds))
	for _, d := range ds {
		v := Device{ID: d.ID, Label: d.Label, Strategy: d.Strategy, CreatedAt: d.CreatedAt.UTC(), ExpiresAt: d.ExpiresAt.UTC()}
		if !d.LastUsedAt.IsZero() {
			lu := d.LastUsedAt.UTC()
			v.LastUsedAt = &lu
		}
		out = append(out, v)
	}
	return out
}
