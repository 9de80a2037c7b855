package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// cancelResult is how query cancels fared against one target under load.
type cancelResult struct {
	target        string
	trials, ok    int
	p50, p99, max time.Duration
}

// cancelUnderLoad keeps the target busy with pgbench select-only (clients
// sessions) while one more client runs `SELECT pg_sleep(30)` and cancels it
// (CancelRequest, encrypted when the session is), trials times. A cancel
// counts when the query ends with SQLSTATE 57014 within 5 seconds; latency is
// from sending the cancel request to the query's end. The cancel is sent once
// the server shows the query running (pg_stat_activity, read over direct, a
// connection straight to the server), so no trial cancels a query that has
// not started and none waits longer than it must.
func cancelUnderLoad(b *testing.B, target, dsn, direct string, trials int) cancelResult {
	b.Helper()
	ctx := context.Background()
	load := exec.Command("pgbench", "-n", "-S", "-c", itoa(clients), "-j", "2", "-T", "3600", dsn)
	if err := load.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = load.Process.Kill(); _ = load.Wait() }()
	time.Sleep(time.Second) // let the load reach its pace
	res := cancelResult{target: target, trials: trials}
	var lat []time.Duration
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatalf("cancel client for %s: %v", target, err)
	}
	observer, err := pgx.Connect(ctx, direct)
	if err != nil {
		b.Fatalf("observer for %s: %v", target, err)
	}
	defer observer.Close(ctx)
	for trial := range trials {
		done := make(chan error, 1)
		tag := fmt.Sprintf("SELECT pg_sleep(30) -- cancel trial %d", trial)
		go func() { _, err := conn.Exec(ctx, tag); done <- err }()
		if err := waitRunning(ctx, observer, tag); err != nil {
			b.Fatalf("%s: %v", target, err)
		}
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cerr := conn.PgConn().CancelRequest(cctx)
		cancel()
		var qerr error
		select {
		case qerr = <-done:
		case <-time.After(5 * time.Second):
			// Not cancelled: end the session and start another.
			_ = conn.PgConn().Conn().Close()
			qerr = <-done
			if conn, err = pgx.Connect(ctx, dsn); err != nil {
				b.Fatalf("cancel client for %s: %v", target, err)
			}
		}
		var pgErr *pgconn.PgError
		if cerr == nil && errors.As(qerr, &pgErr) && pgErr.Code == "57014" {
			res.ok++
			lat = append(lat, time.Since(start))
		}
	}
	conn.Close(ctx)
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50, res.p99, res.max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	fmt.Printf("%-42s %-18s %d/%d cancelled, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", "cancel under select-only load", target,
		res.ok, res.trials, ms(res.p50), ms(res.p99), ms(res.max))
	return res
}

// waitRunning polls pg_stat_activity until a backend runs query, for at
// most 10 seconds (a query that never shows is the harness's failure).
func waitRunning(ctx context.Context, observer *pgx.Conn, query string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := observer.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1", query).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("the query %q did not show as running in 10s", query)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
