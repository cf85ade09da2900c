# Static binary (no cgo: the embedded SQLite driver is pure Go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/gatehouse ./cmd/gatehouse

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /gatehouse
COPY config /config
WORKDIR /
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/gatehouse"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--data-dir", "/data"]
