package admin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gatehouse/gatehouse/internal/resource"
)

// maxApplyBytes bounds a file given to Apply; each document in it is still
// limited to resource.MaxBodyBytes.
const maxApplyBytes = 64 << 20

// ApplyResult reports what Apply did with one document of the file.
type ApplyResult struct {
	Type    string
	ID      string
	Created bool
	Err     error
	Index   int // 1-based position of the document in the file
	Line    int // line where the document starts
}

// Apply creates or replaces every resource of a multi-document YAML file,
// each document naming its `resourceType` and `id`, through the same
// validation and write path as PUT. Documents are applied in order, each in
// its own transaction: one bad document is reported and the others still
// apply, and a rejected document writes nothing. The error is only for a
// file that cannot be read at all.
func (h *Handler) Apply(ctx context.Context, r io.Reader) ([]ApplyResult, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxApplyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read resource file: %w", err)
	}
	if len(data) > maxApplyBytes {
		return nil, fmt.Errorf("resource file exceeds %d MiB", maxApplyBytes>>20)
	}
	who := actor{name: "apply"}
	var results []ApplyResult
	for _, d := range splitYAML(data) {
		res := ApplyResult{Index: len(results) + 1, Line: d.line}
		res.Type, res.ID, res.Created, res.Err = h.applyOne(ctx, d.body, who)
		results = append(results, res)
	}
	return results, nil
}

func (h *Handler) applyOne(ctx context.Context, body []byte, who actor) (typ, id string, created bool, err error) {
	tree, err := resource.Parse(body, resource.FormatYAML)
	if err != nil {
		return "", "", false, err
	}
	typ, _ = tree["resourceType"].(string)
	id, _ = tree["id"].(string)
	if typ == "" {
		return "", id, false, resource.Invalid("resourceType", resource.CodeRequired, "each document needs a resourceType (User, Client or AuthConfig)")
	}
	if id == "" {
		return typ, "", false, resource.Invalid("id", resource.CodeRequired, "each document needs an id")
	}
	v, err := resource.DecodeAs(typ, tree)
	if err != nil {
		return typ, id, false, err
	}
	_, created, err = h.put(ctx, v, nil, who)
	if err != nil {
		return typ, id, false, describe(err)
	}
	return typ, id, created, nil
}

// describe turns the service's internal sentinel errors into plain ones for
// the CLI report; validation errors pass through unchanged.
func describe(err error) error {
	var ce *conflictError
	switch {
	case errors.As(err, &ce):
		if ce.path != "" {
			return fmt.Errorf("%s: %s", ce.path, ce.msg)
		}
		return errors.New(ce.msg)
	case errors.Is(err, errPrecondition):
		return errors.New("the resource changed while it was being written; apply again")
	}
	return err
}

type yamlDoc struct {
	body []byte
	line int
}

// splitYAML cuts a YAML stream at its document markers (a line starting
// with `---` or `...`). Splitting ourselves, rather than reading the stream
// with one decoder, lets a document with a syntax error be reported while
// the documents after it are still applied. Documents holding only comments
// or blank lines are skipped.
func splitYAML(data []byte) []yamlDoc {
	var (
		docs  []yamlDoc
		cur   bytes.Buffer
		start = 1
		line  = 0
	)
	flush := func(next int) {
		if hasContent(cur.Bytes()) {
			docs = append(docs, yamlDoc{body: bytes.Clone(cur.Bytes()), line: start})
		}
		cur.Reset()
		start = next
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), maxApplyBytes)
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case isMarker(text, "---"):
			flush(line + 1)
			if rest := strings.TrimSpace(text[3:]); rest != "" {
				start = line
				cur.WriteString(rest)
				cur.WriteByte('\n')
			}
		case isMarker(text, "..."):
			flush(line + 1)
		default:
			cur.WriteString(text)
			cur.WriteByte('\n')
		}
	}
	flush(line + 1)
	return docs
}

func isMarker(line, marker string) bool {
	if !strings.HasPrefix(line, marker) {
		return false
	}
	rest := line[len(marker):]
	return rest == "" || rest[0] == ' ' || rest[0] == '\t'
}

func hasContent(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}
