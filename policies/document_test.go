package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string // canonical output; in itself when empty
	}{
		{name: "single statement object and bare strings",
			in: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"rds-db:connect","Resource":"arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXYZ/*"}}`},
		{name: "lists and sid",
			in: `{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"A","Effect":"Deny","NotAction":["iam:*","sts:*"],"NotResource":["*"]}]}`},
		{name: "element order is canonical",
			in:   `{"Statement":[{"Resource":"*","Action":"s3:GetObject","Effect":"Allow"}],"Version":"2012-10-17"}`,
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`},
		{name: "white space is dropped",
			in:   "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [ { \"Effect\": \"Allow\", \"Action\": [ \"a:b\" ], \"Resource\": \"*\" } ]\n}",
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["a:b"],"Resource":"*"}]}`},
		{name: "trust policy with condition literals",
			in: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:role/a"],"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"Bool":{"aws:SecureTransport":true},"NumericLessThan":{"aws:MultiFactorAuthAge":[3600,7200]},"StringEquals":{"sts:ExternalId":"e"}}}]}`},
		{name: "principal star and no html escaping",
			in: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"a:<b>&","Resource":"*"}]}`},
		{name: "unicode and escapes",
			in:   `{"Version":"2012-10-17","Statement":[{"Sid":"caf\u00e9\n\u2028","Effect":"Allow","Action":"a:b","Resource":"*"}]}`,
			want: "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"café\\n\\u2028\",\"Effect\":\"Allow\",\"Action\":\"a:b\",\"Resource\":\"*\"}]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if got := d.String(); got != want {
				t.Fatalf("canonical form\n got %s\nwant %s", got, want)
			}
			again, err := Parse(d.JSON())
			if err != nil {
				t.Fatalf("reparse: %v", err)
			}
			if !bytes.Equal(again.JSON(), d.JSON()) {
				t.Fatalf("not a fixed point: %s vs %s", again.JSON(), d.JSON())
			}
			// encoding/json reads the same value back.
			var v any
			if err := json.Unmarshal(d.JSON(), &v); err != nil {
				t.Fatalf("encoding/json rejects canonical output: %v", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{"Version":`, "invalid JSON"},
		{"not an object", `[]`, "expected a JSON object"},
		{"trailing data", `{"Statement":[]} {}`, "invalid JSON"},
		{"missing statement", `{"Version":"2012-10-17"}`, "missing Statement"},
		{"unknown top element", `{"version":"2012-10-17","Statement":[]}`, `unknown element "version"`},
		{"bad version", `{"Version":"2020-01-01","Statement":[]}`, `unknown version "2020-01-01"`},
		{"unknown statement element", `{"Statement":[{"Effect":"Allow","Action":"a:b","Resources":"*"}]}`, `Statement[0]: unknown element "Resources"`},
		{"bad effect", `{"Statement":[{"Effect":"allow","Action":"a:b","Resource":"*"}]}`, `Statement[0].Effect: must be "Allow" or "Deny"`},
		{"missing effect", `{"Statement":[{"Action":"a:b","Resource":"*"}]}`, "Statement[0]: missing Effect"},
		{"missing action", `{"Statement":[{"Effect":"Allow","Resource":"*"}]}`, "missing Action"},
		{"action and notaction", `{"Statement":[{"Effect":"Allow","Action":"a:b","NotAction":"c:d","Resource":"*"}]}`, "both Action and NotAction"},
		{"resource and notresource", `{"Statement":[{"Effect":"Allow","Action":"a:b","Resource":"*","NotResource":"x"}]}`, "both Resource and NotResource"},
		{"number action", `{"Statement":[{"Effect":"Allow","Action":3,"Resource":"*"}]}`, "Statement[0].Action: expected a string"},
		{"number in action list", `{"Statement":[{"Effect":"Allow","Action":["a:b",3],"Resource":"*"}]}`, "Statement[0].Action[1]: expected a string"},
		{"bare principal", `{"Statement":[{"Effect":"Allow","Principal":"arn:aws:iam::1:root","Action":"a:b"}]}`, `must be "*"`},
		{"unknown principal type", `{"Statement":[{"Effect":"Allow","Principal":{"IAM":"x"},"Action":"a:b"}]}`, `unknown principal type "IAM"`},
		{"condition object value", `{"Statement":[{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":{"StringEquals":{"k":{"x":1}}}}]}`, "expected a string, number or boolean"},
		{"null statement", `{"Statement":null}`, "expected an object or a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%s) succeeded, want error containing %q", tt.in, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v is not ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
	}{
		{`{}`, 2},
		{"{ \n\t\r}", 2},
		{`{"a b":"c d"}`, 13},
		{`{"a":"\" x "}`, 13},
		{`{"a":"\\"}  `, 10},
		{`{"é":"ü"}`, 9},
		{`["x\\\"y z"]`, 12},
	}
	for _, tt := range tests {
		if got := Size([]byte(tt.in)); got != tt.want {
			t.Errorf("Size(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	d, err := Parse([]byte(`{"Version":"2012-10-17","Statement":[{"Sid":"with space","Effect":"Allow","Action":"a:b","Resource":"*"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	indented, _ := json.MarshalIndent(json.RawMessage(d.JSON()), "", "    ")
	if Size(indented) != d.Size() || d.Size() != len(d.JSON()) {
		t.Errorf("sizes differ: indented %d, canonical %d, bytes %d", Size(indented), d.Size(), len(d.JSON()))
	}
}

func TestEquivalent(t *testing.T) {
	t.Parallel()
	base := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["rds-db:connect"],"Resource":["arn:a","arn:b"]}]}`
	tests := []struct {
		name  string
		other string
		equal bool
	}{
		{"same", base, true},
		{"reordered resources and string form", `{"Statement":[{"Resource":["arn:b","arn:a"],"Effect":"Allow","Action":"rds-db:connect"}],"Version":"2012-10-17"}`, true},
		{"split into statements with sids", `{"Version":"2012-10-17","Statement":[{"Sid":"One","Effect":"Allow","Action":"rds-db:connect","Resource":"arn:b"},{"Effect":"Allow","Action":"RDS-DB:Connect","Resource":"arn:a"}]}`, true},
		{"duplicated", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":["arn:a","arn:a","arn:b"]}]}`, true},
		{"narrowed", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"arn:a"}]}`, false},
		{"widened", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":["arn:a","arn:b","arn:c"]}]}`, false},
		{"deny instead", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"rds-db:connect","Resource":["arn:a","arn:b"]}]}`, false},
		{"different version", `{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":["arn:a","arn:b"]}]}`, false},
	}
	a, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := Parse([]byte(tt.other))
			if err != nil {
				t.Fatal(err)
			}
			if got := Equivalent(a, b); got != tt.equal {
				t.Errorf("Equivalent = %v, want %v\n a %s\n b %s", got, tt.equal, a.Normalize(), b.Normalize())
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}}`))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["a","b"]},"Action":"sts:AssumeRole","Condition":{"Bool":{"k":[true,"x"]}}}]}`))
	f.Add([]byte(`{"Statement":[{"Sid":"\u2028\"","Effect":"Deny","NotAction":[],"NotResource":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		out := d.JSON()
		if !json.Valid(out) {
			t.Fatalf("canonical output is not JSON: %q", out)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("canonical output does not parse: %v\n%s", err, out)
		}
		if !bytes.Equal(again.JSON(), out) {
			t.Fatalf("not a fixed point:\n%s\n%s", out, again.JSON())
		}
		if d.Size() != Size(out) {
			t.Fatalf("Size %d != counted %d", d.Size(), Size(out))
		}
		if !Equivalent(d, again) {
			t.Fatal("a document is not equivalent to its own canonical form")
		}
	})
}

func FuzzSize(f *testing.F) {
	f.Add([]byte(`{"a": "b c", "d" : [1, 2, "\"x y\\"]}`))
	f.Add([]byte("[\"\xff\", \"é\"]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := Size(data)
		if n < 0 || n > len(data) {
			t.Fatalf("Size = %d out of range for %d bytes", n, len(data))
		}
		if !json.Valid(data) {
			return
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, data); err != nil {
			t.Fatal(err)
		}
		if want := utf8.RuneCount(compact.Bytes()); n != want {
			t.Fatalf("Size = %d, characters of compact form = %d", n, want)
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, data, " ", "\t"); err == nil && Size(indented.Bytes()) != n {
			t.Fatalf("indenting changed the size: %d vs %d", Size(indented.Bytes()), n)
		}
	})
}
