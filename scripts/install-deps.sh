#!/usr/bin/env bash
# Installs what rdsgate's tests and demo need when it is missing: MariaDB
# server and client, PostgreSQL 15, script(1), systemd-analyze, moto's
# server and terraform.
# .ci/run and `make demo` call it; on these machines most of it is there.
# With --bench it also installs pgbouncer, HAProxy and sysbench, which
# `make bench-proxy` compares the proxy with.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, installed only when missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

echo "== packages"
# bsdutils: script(1), which gives the CLI a terminal in the prompt test.
# MariaDB server and client: the proxy's MySQL tests run against them.
# systemd: systemd-analyze verify checks the unit proxy configure writes.
# PostgreSQL 15 server binaries, psql and pgbench come with these machines;
# elsewhere they are installed too.
apt_install bsdutils mariadb-server mariadb-client systemd
if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  apt_install postgresql-15 postgresql-client-15
fi
command -v psql >/dev/null 2>&1 || apt_install postgresql-client-15
if [ "${1:-}" = "--bench" ]; then
  apt_install pgbouncer haproxy sysbench
fi
# PostgreSQL refuses to run as root; the tests run it as this user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

echo "== moto's server (the AWS emulator for IAM, STS and RDS)"
if ! command -v moto_server >/dev/null 2>&1; then
  # These machines come with moto 5.2.1; elsewhere, install it where PyPI is reachable.
  python3 -m pip install --quiet 'moto[server]==5.2.1' || python3 -m pip install --quiet 'moto[server]'
fi
moto_server --help >/dev/null
python3 -c 'import moto; print("moto", moto.__version__)'

echo "== terraform (the provider's acceptance tests, the modules' terratest tests, the docs)"
if ! command -v terraform >/dev/null 2>&1; then
  # These machines come with terraform; elsewhere, build it from its Go module.
  GOBIN="$(go env GOPATH)/bin" go install github.com/hashicorp/terraform@v1.11.4
  export PATH="$(go env GOPATH)/bin:$PATH"
fi
# sed reads it all: head would close the pipe early, and pipefail would
# turn terraform's SIGPIPE into a failure.
terraform version | sed -n 1p
export CHECKPOINT_DISABLE=1

