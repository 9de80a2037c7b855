package proxyd

import (
	"strings"
)

// The gateway reads just enough of a MySQL client's SQL to keep the RBAC
// true after login: a USE that would change the database, and a KILL whose
// connection id must be translated to the database's thread. A proxy that
// guesses how the server will split a query is a proxy that can be fooled,
// so it lexes the query every way the server might (with and without
// backslash escapes, as NO_BACKSLASH_ESCAPES changes; executable comments
// /*!...*/ as code and as comments, as the server's version decides) and
// acts on what any of them finds.

// sqlStatement is the first tokens of one statement.
type sqlStatement []string

// sqlLexing is what one reading of a query found.
type sqlLexing struct {
	stmts []sqlStatement
	kill  bool // KILL appears as a word outside strings and comments, anywhere
}

const maxStatementTokens = 4

// lexMySQL reads q one way.
func lexMySQL(q []byte, backslashEscapes, execCommentsAreCode bool) sqlLexing {
	var out sqlLexing
	var cur sqlStatement
	var tok []byte
	inTok := false
	endTok := func() {
		if !inTok {
			return
		}
		inTok = false
		word := string(tok)
		if strings.EqualFold(word, "KILL") {
			out.kill = true
		}
		if len(cur) < maxStatementTokens {
			cur = append(cur, word)
		}
		tok = tok[:0]
	}
	endStmt := func() {
		endTok()
		if len(cur) > 0 {
			out.stmts = append(out.stmts, cur)
		}
		cur = nil
	}
	addQuoted := func(val []byte) {
		endTok()
		if len(cur) < maxStatementTokens {
			cur = append(cur, string(val))
		}
	}
	inExec := false // inside /*! ... */ read as code
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			// A quoted string or identifier, up to its closing quote
			// (doubled quotes inside; backslash escapes in strings).
			endTok()
			var val []byte
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						val = append(val, c)
						j += 2
						continue
					}
					break
				}
				if q[j] == '\\' && c != '`' && backslashEscapes && j+1 < len(q) {
					val = append(val, q[j+1])
					j += 2
					continue
				}
				val = append(val, q[j])
				j++
			}
			if c == '`' || c == '"' {
				addQuoted(val)
			} else {
				addQuoted([]byte("'")) // a string value: not a name
			}
			i = j + 1
		case c == '#' || (c == '-' && i+1 < len(q) && q[i+1] == '-' && (i+2 == len(q) || q[i+2] <= ' ')):
			endTok()
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			endTok()
			j := i + 2
			exec := j < len(q) && q[j] == '!' || j+1 < len(q) && (q[j] == 'M' || q[j] == 'm') && q[j+1] == '!'
			if exec && execCommentsAreCode && !inExec {
				// /*!50700 code */ or /*M!100100 code */: skip the marker
				// and the version, then read on as code.
				for j < len(q) && (q[j] == '!' || q[j] == 'M' || q[j] == 'm') {
					j++
				}
				for j < len(q) && q[j] >= '0' && q[j] <= '9' {
					j++
				}
				inExec = true
				i = j
				continue
			}
			end := strings.Index(string(q[j:]), "*/")
			if end < 0 {
				i = len(q)
			} else {
				i = j + end + 2
			}
		case c == '*' && inExec && i+1 < len(q) && q[i+1] == '/':
			endTok()
			inExec = false
			i += 2
		case c == ';':
			endStmt()
			i++
		case isWordByte(c):
			if !inTok {
				inTok = true
			}
			tok = append(tok, c)
			i++
		case c <= ' ':
			endTok()
			i++
		default:
			endTok()
			if len(cur) < maxStatementTokens {
				cur = append(cur, string(c))
			}
			i++
		}
	}
	endStmt()
	return out
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// lexMySQLEveryWay is every reading of q the server might make.
func lexMySQLEveryWay(q []byte) []sqlLexing {
	return []sqlLexing{lexMySQL(q, true, true), lexMySQL(q, false, true), lexMySQL(q, true, false), lexMySQL(q, false, false)}
}

// mysqlQueryVerdict is what the gateway does with a query.
type mysqlQueryVerdict struct {
	refuse string   // a message for the client: do not send the query
	kill   *killReq // a KILL to translate
	use    []string // databases the query changes to, in order
}

type killReq struct {
	query bool // KILL QUERY, not the connection
	id    uint64
}

// judgeMySQLQuery reads a COM_QUERY's SQL for USE and KILL.
func judgeMySQLQuery(q []byte) mysqlQueryVerdict {
	var v mysqlQueryVerdict
	readings := lexMySQLEveryWay(q)
	killSeen := false
	for _, r := range readings {
		killSeen = killSeen || r.kill
	}
	if killSeen {
		var first *killReq
		for _, r := range readings {
			k, ok := simpleKill(r)
			if !ok || (first != nil && *first != *k) {
				return mysqlQueryVerdict{refuse: "rdsgate: send KILL alone, as KILL [QUERY|CONNECTION] <connection id> (the gateway translates the id to the database's thread; it refuses KILL in any other form)"}
			}
			first = k
		}
		v.kill = first
		return v
	}
	seen := map[string]bool{}
	for _, r := range readings {
		for _, st := range r.stmts {
			if !strings.EqualFold(st[0], "USE") {
				continue
			}
			if len(st) != 2 || st[1] == "'" {
				return mysqlQueryVerdict{refuse: "rdsgate: write USE as USE <database> (the gateway checks each change of database against its RBAC)"}
			}
			if !seen[st[1]] {
				seen[st[1]] = true
				v.use = append(v.use, st[1])
			}
		}
	}
	return v
}

// simpleKill reads a query that is one KILL statement and nothing else.
func simpleKill(r sqlLexing) (*killReq, bool) {
	if len(r.stmts) != 1 {
		return nil, false
	}
	st := r.stmts[0]
	if len(st) < 2 || !strings.EqualFold(st[0], "KILL") {
		return nil, false
	}
	k := &killReq{}
	rest := st[1:]
	if strings.EqualFold(rest[0], "QUERY") || strings.EqualFold(rest[0], "CONNECTION") {
		k.query = strings.EqualFold(rest[0], "QUERY")
		rest = rest[1:]
	}
	if len(rest) != 1 || rest[0] == "" || len(rest[0]) > 10 {
		return nil, false
	}
	for _, c := range rest[0] {
		if c < '0' || c > '9' {
			return nil, false
		}
		k.id = k.id*10 + uint64(c-'0')
	}
	return k, true
}
