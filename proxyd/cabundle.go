package proxyd

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RDSCABundleURL is where AWS publishes the bundle of certificate
// authorities that sign every RDS and Aurora server certificate, in every
// commercial region ("Using SSL/TLS to encrypt a connection to a DB
// instance or cluster" in the RDS User Guide). GovCloud and China regions
// have their own bundles on the same site.
const RDSCABundleURL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

// maxCABundle bounds a download: the global bundle is about 200 KB.
const maxCABundle = 8 << 20

// CABundleFetch says where to fetch a CA bundle from and how to check it.
type CABundleFetch struct {
	URL  string // RDSCABundleURL when empty
	Path string // where the bundle is kept
	// MaxAge: a bundle kept for less than this is used without asking the
	// server; an older one is revalidated (If-Modified-Since). 0 always asks.
	MaxAge time.Duration
	// SHA256, when set, is the hex digest the downloaded file must have.
	SHA256 string
	Client *http.Client // http.DefaultClient when nil
	Now    func() time.Time
}

// CABundleResult says what a fetch did.
type CABundleResult struct {
	Status       string // "downloaded", "unchanged" (the server said 304) or "fresh" (younger than MaxAge: not asked)
	Certificates int
	SHA256       string
}

// FetchCABundle keeps a CA bundle at f.Path: it downloads it when missing or
// older than MaxAge, checks that it is a bundle of certificate authorities
// (every PEM block a CA certificate that parses, and the digest when one is
// pinned), and replaces the file atomically only then. A failed fetch leaves
// the file as it was. Every error names the URL.
func FetchCABundle(ctx context.Context, f CABundleFetch) (*CABundleResult, error) {
	if f.URL == "" {
		f.URL = RDSCABundleURL
	}
	if f.Client == nil {
		f.Client = http.DefaultClient
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("CA bundle from %s: %s", f.URL, fmt.Sprintf(format, args...))
	}
	// The bundle kept at f.Path, when it is one: served as it is while
	// fresh, and the copy a 304 confirms.
	var kept *CABundleResult
	var modified time.Time
	if st, err := os.Stat(f.Path); err == nil {
		if data, err := os.ReadFile(f.Path); err == nil {
			if n, err := CheckCABundle(data); err == nil {
				kept, modified = &CABundleResult{Certificates: n, SHA256: digest(data)}, st.ModTime()
			}
		}
	}
	if kept != nil && f.MaxAge > 0 && f.Now().Sub(modified) < f.MaxAge && f.SHA256 == "" {
		kept.Status = "fresh"
		return kept, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, fail("%v", err)
	}
	if kept != nil && f.SHA256 == "" {
		req.Header.Set("If-Modified-Since", modified.UTC().Format(http.TimeFormat))
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, fail("%v", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if kept == nil {
			return nil, fail("the server answered 304 Not Modified, but no usable bundle is kept at %s", f.Path)
		}
		now := f.Now()
		_ = os.Chtimes(f.Path, now, now) // checked now: fresh for another MaxAge
		kept.Status = "unchanged"
		return kept, nil
	case http.StatusOK:
	default:
		return nil, fail("the server answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCABundle+1))
	if err != nil {
		return nil, fail("reading: %v", err)
	}
	if len(data) > maxCABundle {
		return nil, fail("more than %d MiB: not a CA bundle", maxCABundle>>20)
	}
	n, err := CheckCABundle(data)
	if err != nil {
		return nil, fail("%v; %s is unchanged", err, f.Path)
	}
	sum := digest(data)
	if f.SHA256 != "" && !strings.EqualFold(f.SHA256, sum) {
		return nil, fail("its SHA-256 is %s, not the %s given; %s is unchanged", sum, f.SHA256, f.Path)
	}
	if err := writeAtomically(f.Path, data); err != nil {
		return nil, fail("%v", err)
	}
	// The file's time is when it was last checked: its age decides
	// MaxAge, and it is the If-Modified-Since of the next fetch.
	now := f.Now()
	_ = os.Chtimes(f.Path, now, now)
	return &CABundleResult{Status: "downloaded", Certificates: n, SHA256: sum}, nil
}

// CheckCABundle checks that data is a PEM bundle of certificate authorities
// and returns how many it holds.
func CheckCABundle(data []byte) (int, error) {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(strings.TrimSpace(string(rest))) > 0 {
				return n, errors.New("text after the last PEM block: not a CA bundle (an HTML error page?)")
			}
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return n, fmt.Errorf("PEM block %d is a %s, not a CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return n, fmt.Errorf("certificate %d does not parse: %v", n, err)
		}
		if !c.IsCA {
			return n, fmt.Errorf("certificate %d (%s) is not a certificate authority", n, c.Subject)
		}
	}
	if n == 0 {
		return 0, errors.New("no PEM certificates in it")
	}
	return n, nil
}

func digest(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// caBundleHint is what every error about a missing or unusable bundle ends
// with: where it comes from and the command that fetches it.
func caBundleHint(path string) string {
	return fmt.Sprintf("the RDS CA bundle is published at %s; fetch it with: rdsgate proxy ca-bundle --output %s", RDSCABundleURL, path)
}
