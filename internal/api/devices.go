package api

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// The user's remembered browsers (`Authorization: Bearer <access token>`):
// GET /auth/devices lists them, DELETE /auth/devices/{id} forgets one.
const (
	PathDevices = "/auth/devices"
	pathDevice  = PathDevices + "/{id}"
)

func (h *Handler) listDevices(c *call) error {
	a, err := c.bearer()
	if err != nil {
		return err
	}
	ds, err := h.SignIn.Devices(c.r.Context(), a.user.ID)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"devices": resource.DevicesFromStore(ds)})
}

func (h *Handler) deleteDevice(c *call) error {
	a, err := c.bearer()
	if err != nil {
		return err
	}
	err = h.SignIn.RevokeDevice(c.r.Context(), a.user.ID, c.r.PathValue("id"), "user")
	if errors.Is(err, store.ErrNotFound) {
		return fail(http.StatusNotFound, "not_found", "No such device.")
	}
	if err != nil {
		return err
	}
	c.cors()
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
