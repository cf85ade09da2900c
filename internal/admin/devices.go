package admin

import (
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// A user's remembered browsers: GET /User/{id}/$devices lists them,
// DELETE /User/{id}/$devices/{deviceId} forgets one (the browser is asked
// for its second factor again at the next sign-in).

func (h *Handler) registerDevices(mux *http.ServeMux) {
	mux.Handle("GET /User/{id}/$devices", h.authenticated(http.HandlerFunc(h.handleListDevices)))
	mux.Handle("DELETE /User/{id}/$devices/{deviceId}", h.authenticated(http.HandlerFunc(h.handleDeleteDevice)))
}

func (h *Handler) handleListDevices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := h.Store.GetUser(ctx, id); err != nil {
		h.fail(w, r, fmt.Errorf("get user %q: %w", id, err))
		return
	}
	ds, err := h.Store.ListRememberedDevices(ctx, id, h.Now().UTC())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.write(w, r, http.StatusOK, map[string]any{"devices": resource.DevicesFromStore(ds)})
}

func (h *Handler) handleDeleteDevice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, device := r.PathValue("id"), r.PathValue("deviceId")
	if err := h.Store.DeleteRememberedDevice(ctx, id, device); err != nil {
		h.fail(w, r, err)
		return
	}
	if h.Audit != nil {
		who := actorFrom(ctx)
		_ = h.Audit.Record(ctx, store.AuditEvent{Type: audit.DeviceRevoked, UserID: id, RemoteAddr: who.remote, RequestID: who.requestID,
			Detail: map[string]string{"device": device, "by": "admin", "actor": who.name}})
	}
	w.WriteHeader(http.StatusNoContent)
}
