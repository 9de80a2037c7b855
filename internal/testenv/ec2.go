package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// CreateSubnets makes a VPC with two subnets in moto's EC2, for resources
// that need them (an RDS Proxy). It speaks the EC2 query protocol directly:
// moto routes by the credential scope and does not check signatures, and the
// EC2 SDK module is too large to take on for two test calls.
func CreateSubnets(t T, motoURL, region string) (vpc string, subnets []string) {
	t.Helper()
	vpc = ec2Call(t, motoURL, region, url.Values{"Action": {"CreateVpc"}, "CidrBlock": {"10.0.0.0/16"}}, "vpcId")
	for i, az := range []string{"a", "b"} {
		subnets = append(subnets, ec2Call(t, motoURL, region, url.Values{"Action": {"CreateSubnet"}, "VpcId": {vpc},
			"CidrBlock": {fmt.Sprintf("10.0.%d.0/24", i+1)}, "AvailabilityZone": {region + az}}, "subnetId"))
	}
	return vpc, subnets
}

func ec2Call(t T, motoURL, region string, form url.Values, field string) string {
	t.Helper()
	form.Set("Version", "2016-11-15")
	req, err := http.NewRequest(http.MethodPost, motoURL+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s/%s/ec2/aws4_request, SignedHeaders=host, Signature=0",
		AccessKeyID, time.Now().UTC().Format("20060102"), region))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile("<" + field + ">([^<]+)</" + field + ">").FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("EC2 %s: %d %s", form.Get("Action"), resp.StatusCode, body)
	}
	return string(m[1])
}
