package resource

import (
	"encoding/json"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// MarshalJSON writes a single value as a plain string, so a resource written
// as `redirect_uri: 'http://localhost:3001'` reads back the way it was put.
func (l StringList) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return json.Marshal(l[0])
	}
	return json.Marshal([]string(l))
}

// UnmarshalJSON accepts a string or a list of strings.
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("expected a string or a list of strings")
	}
	*l = many
	return nil
}

// MarshalYAML mirrors MarshalJSON.
func (l StringList) MarshalYAML() (any, error) {
	if len(l) == 1 {
		return l[0], nil
	}
	return []string(l), nil
}

// UnmarshalYAML accepts a string or a list of strings. The admin API never
// decodes YAML into structs directly (see Decode); this serves callers that do.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		var many []string
		if err := n.Decode(&many); err != nil {
			return fmt.Errorf("expected a list of strings: %w", err)
		}
		*l = many
		return nil
	}
	return errors.New("expected a string or a list of strings")
}

// UnmarshalJSON remembers whether a timeout was given, so that an explicit
// `timeout: 0` is refused instead of silently meaning "default".
func (w *Webhook) UnmarshalJSON(b []byte) error {
	type plain Webhook
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var probe struct {
		Timeout json.RawMessage `json:"timeout"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	*w = Webhook(p)
	w.timeoutSet = len(probe.Timeout) > 0 && string(probe.Timeout) != "null"
	return nil
}
