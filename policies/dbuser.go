package policies

import (
	"fmt"
	"strings"
)

// DBUserSQL returns the SQL that creates a database user who logs in with
// IAM authentication tokens instead of a password: for PostgreSQL the user
// gets the rds_iam role; for MySQL and MariaDB the AWSAuthenticationPlugin,
// which receives the token through mysql_clear_password, so TLS is required.
func DBUserSQL(protocol, user string) (string, error) {
	if !dbUserPattern.MatchString(user) || user == "*" {
		return "", fmt.Errorf("%w: %q is not a database user name (letters, digits, _ $ . @ -, starting with a letter or _, at most 63)", ErrInvalidInput, user)
	}
	switch protocol {
	case "postgres", string(EngineAuroraPostgres):
		q := `"` + strings.ReplaceAll(user, `"`, `""`) + `"`
		return fmt.Sprintf(`-- PostgreSQL: %[2]s logs in with IAM tokens (rds_iam); grant it what it needs on your objects.
CREATE USER %[1]s;
GRANT rds_iam TO %[1]s;
-- A user with rds_iam can no longer log in with a password.
`, q, user), nil
	case "mysql", string(EngineMariaDB), string(EngineAuroraMySQL):
		q := "'" + strings.ReplaceAll(user, "'", "''") + "'@'%'"
		return fmt.Sprintf(`-- MySQL and MariaDB: %[2]s logs in with IAM tokens (AWSAuthenticationPlugin over mysql_clear_password).
CREATE USER %[1]s IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS';
-- The token travels in clear text inside the connection, so refuse it without TLS.
ALTER USER %[1]s REQUIRE SSL;
`, q, user), nil
	}
	return "", fmt.Errorf("%w: unknown engine %q; use postgres or mysql (or an RDS engine name)", ErrInvalidInput, protocol)
}
