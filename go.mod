module github.com/rdsgate/rdsgate

go 1.26
