package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
)

// awsFlags are the flags of every command that calls AWS. Credentials come
// from the SDK's chain; AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>
// point it at an emulator.
func awsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "region", EnvVars: []string{"RDSGATE_REGION"}, Usage: "AWS region (default: AWS_REGION or the profile's)"},
		&cli.StringFlag{Name: "profile", EnvVars: []string{"RDSGATE_PROFILE"}, Usage: "AWS shared config profile (default: AWS_PROFILE or default)"},
	}
}

// confirmFlags are the flags of commands that write to AWS.
func confirmFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, EnvVars: []string{"RDSGATE_YES"}, Usage: "apply without asking (for CI)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "show what would change and stop"},
	}
}

func connectAWS(c *cli.Context) (*bootstrap.Clients, error) {
	return bootstrap.Connect(c.Context, bootstrap.Config{Region: c.String("region"), Profile: c.String("profile")})
}

// awsIfAvailable connects when credentials can be had within a few seconds,
// and otherwise says why not: planning works without AWS, so a machine
// without credentials is not an error.
func awsIfAvailable(c *cli.Context) (*bootstrap.Clients, string) {
	clients, err := connectAWS(c)
	if err != nil {
		return nil, err.Error()
	}
	ctx, cancel := context.WithTimeout(c.Context, 3*time.Second)
	defer cancel()
	if _, err := clients.Config.Credentials.Retrieve(ctx); err != nil {
		return nil, "no AWS credentials found"
	}
	return clients, ""
}

// isTerminal reports whether f is an interactive terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// confirm asks before writing. At a terminal it asks; elsewhere it needs
// --yes, so CI never hangs on a prompt.
func confirm(c *cli.Context, cfg *config, question string) error {
	if c.Bool("yes") {
		return nil
	}
	if !isTerminal(cfg.stdin) {
		return usageError("not asking for confirmation because standard input is not a terminal: pass --yes to apply, or --dry-run to only look")
	}
	fmt.Fprintf(cfg.stderr, "%s [y/N] ", question)
	answer, err := bufio.NewReader(cfg.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return &ExitError{Code: ExitFailure, Err: fmt.Errorf("cancelled: nothing was changed")}
}
