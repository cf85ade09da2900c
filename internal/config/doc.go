// Package config owns Gatehouse's settings: the Config struct, loading it
// from an optional YAML file and GATEHOUSE_* environment variables (flags are
// applied on top by cmd/gatehouse), defaults for a zero-configuration start,
// validation, and the secrets kept in the data directory (master key,
// generated admin password hash).
package config
