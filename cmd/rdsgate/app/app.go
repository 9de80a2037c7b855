// Package app is the rdsgate command line: NewApp builds it so tests can run
// it with an argument list, and Execute maps its errors to exit codes in one
// place.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// Exit codes. Commands that report a finding (drift) use ExitFinding.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitFinding = 2
	// ExitBusy (EX_TEMPFAIL) says another writer was at work: nothing was
	// taken away, and running again later is the fix.
	ExitBusy = 75
)

// Version is set at build time with -ldflags "-X ...app.Version=v1.2.3".
var Version = "dev"

// ExitError carries the exit code for an error.
type ExitError struct {
	Code int
	Err  error
	// Silent errors were already reported on the output.
	Silent bool
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageError is a mistake in the command line: exit code 2.
func usageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// errInputFile marks a file given on the command line that cannot be read.
var errInputFile = errors.New("cannot read input file")

// config is what an Option can change, mostly for tests.
type config struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// args is the command line as run, for hints that say "run it again".
	args []string
}

// Option configures NewApp.
type Option func(*config)

// WithIO sets the standard streams.
func WithIO(stdin io.Reader, stdout, stderr io.Writer) Option {
	return func(c *config) { c.stdin, c.stdout, c.stderr = stdin, stdout, stderr }
}

// NewApp builds the rdsgate command line.
func NewApp(opts ...Option) *cli.App {
	cfg := &config{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	for _, o := range opts {
		o(cfg)
	}
	a := &cli.App{
		Name:    "rdsgate",
		Usage:   "IAM-authenticated access to AWS RDS and Aurora, declared as code",
		Version: Version,
		Description: "rdsgate prints and creates the IAM permissions its proxy needs, plans the rds-db:connect\n" +
			"permissions of a whole fleet into policy shards that fit IAM's size limits, and applies\n" +
			"them without a gap in access.",
		Reader:          cfg.stdin,
		Writer:          cfg.stdout,
		ErrWriter:       cfg.stderr,
		HideHelpCommand: true,
		Suggest:         true,
		// Errors are reported by Execute, with their exit code, in one place.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			bootstrapCommand(cfg),
			shardsCommand(cfg),
			discoverCommand(cfg),
			enableIAMAuthCommand(cfg),
			dbUserSQLCommand(cfg),
			driftCommand(cfg),
			doctorCommand(cfg),
			proxyCommand(cfg),
			dbCommand(cfg),
			accessCommand(cfg),
		},
		Action: unknownCommand,
	}
	for _, c := range a.Commands {
		setUsageErrors(c)
		if c.Name == "drift" {
			// drift exits 2 only for drift; a wrong flag is an error, 1.
			c.OnUsageError = func(ctx *cli.Context, err error, sub bool) error {
				return &ExitError{Code: ExitFailure, Err: onUsageError(ctx, err, sub)}
			}
		}
	}
	a.OnUsageError = onUsageError
	return a
}

// Execute runs the command line and returns the exit code.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Waits for IAM (eventual consistency, throttling) are said on stderr.
	ctx = bootstrap.WithNotes(ctx, func(s string) { fmt.Fprintf(stderr, "... %s\n", s) })
	err := NewApp(WithIO(stdin, stdout, stderr), func(c *config) { c.args = args }).RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) && ee.Silent {
		return ee.Code
	}
	// Whatever failed, a token or key in the message is not printed.
	fmt.Fprintf(stderr, "rdsgate: %s\n", proxyd.Redact(err.Error()))
	return exitCode(err)
}

func exitCode(err error) int {
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, new(*bootstrap.LeaseHeldError)), errors.Is(err, bootstrap.ErrLeaseLost), errors.Is(err, bootstrap.ErrIAMChanged):
		return ExitBusy
	case errors.Is(err, policies.ErrInvalidInput), errors.Is(err, policies.ErrPlanFormat), errors.Is(err, errInputFile), isNoRegion(err),
		errors.Is(err, policies.ErrUnknownRegion):
		return ExitUsage
	}
	return ExitFailure
}

func setUsageErrors(c *cli.Command) {
	c.OnUsageError = onUsageError
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = unknownCommand
	}
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		msg = "unknown flag --" + name
		if near := nearestFlag(c.Command.Flags, name); near != "" {
			msg += "; did you mean --" + near + "?"
		}
	}
	return usageError("%s (see '%s --help')", msg, c.Command.HelpName)
}

// nearestFlag is the command's flag a mistyped name most likely meant: one
// that is a few edits away, or that contains it or is contained in it
// (--role for --base-role).
func nearestFlag(flags []cli.Flag, name string) string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	if near := policies.Nearest(name, names, 2); near != "" {
		return near
	}
	for _, n := range names {
		if len(name) >= 3 && (strings.Contains(n, name) || strings.Contains(name, n)) {
			return n
		}
	}
	return ""
}

// unknownCommand is the action of command groups: without a subcommand it
// shows help, with an unknown one it says so.
func unknownCommand(c *cli.Context) error {
	if c.Args().Present() {
		name := c.Command.HelpName
		if name == "" {
			name = c.App.Name
		}
		return usageError("unknown command %q for '%s' (see '%s --help')", c.Args().First(), name, name)
	}
	return cli.ShowSubcommandHelp(c)
}

// readInput reads a file named on the command line; "-" is standard input.
func readInput(cfg *config, what, path string) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(cfg.stdin)
		if err != nil {
			return nil, fmt.Errorf("%w: %s from standard input: %v", errInputFile, what, err)
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var hint string
		switch {
		case errors.Is(err, os.ErrNotExist):
			hint = "no such file"
		case errors.Is(err, os.ErrPermission):
			hint = "permission denied"
		default:
			hint = err.Error()
		}
		return nil, fmt.Errorf("%w: %s %s: %s", errInputFile, what, path, hint)
	}
	return data, nil
}

// writeOutput writes a file atomically, so an interrupted run never leaves
// half a plan behind.
func writeOutput(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".rdsgate-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// oneOf checks a flag against its allowed values.
func oneOf(flag, value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return usageError("--%s must be one of %s, not %q", flag, strings.Join(allowed, ", "), value)
}

// splitList reads a flag given as a comma-separated list, repeated, or both.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}
