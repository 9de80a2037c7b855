package proxyd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// People edit the configuration and the RBAC file by hand: an error in
// them says where, as a line and column an editor jumps to.

// decodeStrict decodes a JSON file's data into v, refusing unknown fields
// and anything after the value; an error names the line and column.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr == nil {
			line, col := lineCol(data, int(dec.InputOffset())-1)
			return fmt.Errorf("line %d, column %d: more JSON after the end of the object", line, col)
		}
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := lineCol(data, int(syn.Offset)-1) // Offset counts the offending byte
		return fmt.Errorf("line %d, column %d: %v", line, col, syn)
	case errors.As(err, &typ):
		line, col := lineCol(data, int(typ.Offset)-1)
		field := typ.Field
		if field == "" {
			field = "the file"
		}
		return fmt.Errorf("line %d, column %d: %s must be %s, not %s", line, col, field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	var name string
	if _, e := fmt.Sscanf(err.Error(), "json: unknown field %q", &name); e == nil {
		// The decoder does not say where; the first such key is the one.
		if loc := regexp.MustCompile(`"` + regexp.QuoteMeta(name) + `"\s*:`).FindIndex(data); loc != nil {
			line, col := lineCol(data, loc[0])
			return fmt.Errorf("line %d, column %d: unknown field %q", line, col, name)
		}
		return fmt.Errorf("unknown field %q", name)
	}
	return err
}

func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "a number"
}

// lineCol is the 1-based line and column of a byte offset.
func lineCol(data []byte, offset int) (int, int) {
	offset = max(0, min(offset, len(data)))
	return 1 + bytes.Count(data[:offset], []byte("\n")), offset - bytes.LastIndexByte(data[:offset], '\n')
}

var listIndexRe = regexp.MustCompile(`\b(rules|databases)\[([0-9]+)\]`)

// atLine adds, to a validation error that names an item of a top-level
// list ("rules[3]"), the line where that item starts.
func atLine(err error, data []byte) string {
	m := listIndexRe.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	i, _ := strconv.Atoi(m[2])
	if line := elementLine(data, m[1], i); line > 0 {
		return fmt.Sprintf(" at line %d", line)
	}
	return ""
}

// elementLine is the line where item index of the top-level list key
// starts, or 0.
func elementLine(data []byte, key string, index int) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return 0
		}
		if k != key {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return 0
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return 0
		}
		for i := 0; dec.More(); i++ {
			off := int(dec.InputOffset())
			for off < len(data) && bytes.IndexByte([]byte(" \t\r\n,"), data[off]) >= 0 {
				off++
			}
			if i == index {
				line, _ := lineCol(data, off)
				return line
			}
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return 0
			}
		}
		return 0
	}
	return 0
}
