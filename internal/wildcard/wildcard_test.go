package wildcard

import (
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "arn:aws:rds-db:us-east-1:1:dbuser:db-A/app", true},
		{"arn:aws:rds-db:*:*:dbuser:*/app", "arn:aws:rds-db:us-east-1:1:dbuser:db-A/app", true},
		{"arn:aws:rds-db:*:*:dbuser:*/app", "arn:aws:rds-db:us-east-1:1:dbuser:db-A/apps", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"Orders", "orders", false},
		{"**?", "x", true},
		// Found by FuzzMatch: a * in the value was taken as the pattern's
		// literal *, and the star's other matches were never tried.
		{"*", "*0", true},
		{"role/*", "role/*x", true},
	} {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// oracle is the same meaning written another way: a regular expression
// over bytes (inputs are ASCII here), anchored, where * is .* and ? is .
func oracle(pattern, s string) bool {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String()).MatchString(s)
}

func ascii(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] &= 0x7f
	}
	return string(b)
}

// FuzzMatch compares Match with the regular-expression oracle.
func FuzzMatch(f *testing.F) {
	f.Add("arn:aws:rds-db:*:*:dbuser:*/app", "arn:aws:rds-db:us-east-1:1:dbuser:db-A/app")
	f.Add("a*b?c*", "aXXbYcZ")
	f.Add("*?*?*", "ab")
	f.Add("role/*-admin", "role/team-a-admin")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		pattern, s = ascii(pattern), ascii(s)
		if len(pattern) > 200 || len(s) > 400 {
			return
		}
		if got, want := Match(pattern, s), oracle(pattern, s); got != want {
			t.Fatalf("Match(%q, %q) = %v, the regular expression says %v", pattern, s, got, want)
		}
	})
}
