package policies

import "unicode/utf8"

// Size counts the characters of a JSON policy document the way IAM does when
// it checks the document against a size quota: every character counts except
// white space outside of strings. It takes the document as written, so
// pretty-printed and compact forms of one document have the same size.
func Size(data []byte) int {
	n := 0
	inString, escaped := false, false
	for i := 0; i < len(data); {
		c := data[i]
		if c >= utf8.RuneSelf {
			_, w := utf8.DecodeRune(data[i:])
			i += w
			n++
			continue
		}
		i++
		switch {
		case inString:
			n++
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			n++
			if c == '"' {
				inString = true
			}
		}
	}
	return n
}
