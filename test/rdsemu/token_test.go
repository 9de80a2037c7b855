package rdsemu

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
)

func TestVerify(t *testing.T) {
	keys := &Keys{}
	keys.Add("AKIDEXAMPLE", "secret", "")
	keys.Add("ASIASESSION", "secret2", "session-token/with+chars=")
	creds := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")
	token, err := auth.BuildAuthToken(context.Background(), "db.example.internal:5432", "us-east-1", "app", creds)
	if err != nil {
		t.Fatal(err)
	}
	ok := Expect{Host: "db.example.internal:5432", Region: "us-east-1", DBUser: "app", Now: time.Now()}
	if err := Verify(token, keys, ok); err != nil {
		t.Fatalf("a token from the SDK is refused: %v", err)
	}
	session, _ := auth.BuildAuthToken(context.Background(), "db.example.internal:5432", "us-east-1", "app",
		credentials.NewStaticCredentialsProvider("ASIASESSION", "secret2", "session-token/with+chars="))
	if err := Verify(session, keys, ok); err != nil {
		t.Fatalf("a session token is refused: %v", err)
	}
	// An old token, signed an hour ago.
	req, _ := http.NewRequest("GET", "https://db.example.internal:5432/?Action=connect&DBUser=app&X-Amz-Expires=900", nil)
	old, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}, req, emptyPayloadHash, "rds-db", "us-east-1", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old = strings.TrimPrefix(old, "https://")
	tampered := strings.Replace(token, "DBUser=app", "DBUser=admin", 1)
	for name, tc := range map[string]struct {
		token string
		e     Expect
		want  string
	}{
		"other user":     {token, Expect{Host: ok.Host, Region: ok.Region, DBUser: "admin", Now: ok.Now}, "not \"admin\""},
		"other host":     {token, Expect{Host: "other:5432", Region: ok.Region, DBUser: "app", Now: ok.Now}, "is for host"},
		"other region":   {token, Expect{Host: ok.Host, Region: "eu-west-1", DBUser: "app", Now: ok.Now}, "region"},
		"expired":        {old, ok, "expired"},
		"later":          {token, Expect{Host: ok.Host, Region: ok.Region, DBUser: "app", Now: ok.Now.Add(16 * time.Minute)}, "expired"},
		"tampered":       {strings.Replace(tampered, "DBUser=admin", "DBUser=app", 1) + "0", ok, "signature"},
		"renamed user":   {tampered, Expect{Host: ok.Host, Region: ok.Region, DBUser: "admin", Now: ok.Now}, "signature"},
		"unknown key":    {strings.Replace(token, "AKIDEXAMPLE", "AKIDOTHER", 1), ok, "unknown access key"},
		"not a token":    {"hunter2", ok, "not a presigned URL"},
		"session stolen": {strings.Replace(session, "X-Amz-Security-Token=", "X-Amz-Security-Token=x", 1), ok, "session token"},
	} {
		if err := Verify(tc.token, keys, tc.e); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
