// Package resource owns Gatehouse's Aidbox-shaped resources (User, Client,
// AuthConfig): strict JSON/YAML decoding that names the offending field,
// validation (ids, e-mails, phone numbers, redirect URIs, webhook endpoints
// and the SSRF rules behind them), conversion to and from store records
// (write-only secrets hashed, never serialised back), the rule that picks the
// AuthConfig a Client uses (with a per-request memo, so one request reads a
// client and resolves its AuthConfig once), and the FHIR-style
// OperationOutcome error shape the admin API answers with. It knows nothing
// of HTTP.
package resource
