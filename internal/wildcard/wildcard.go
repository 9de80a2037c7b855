// Package wildcard matches the patterns IAM policies and rdsgate's RBAC
// rules share: * for any run of characters (slashes and colons too) and ?
// for exactly one. It is a leaf, the standard library's alone, so the
// planner (policies) and the proxy (proxyd), which import nothing of each
// other, match patterns the same way.
package wildcard

// Match reports whether s matches pattern, case-sensitively, byte by byte.
// It backtracks only to the last star: linear in the common case and never
// exponential, whatever a hostile pattern holds.
func Match(pattern, s string) bool {
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*': // before the literal case: a * in s is not matched by a * in the pattern alone
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
