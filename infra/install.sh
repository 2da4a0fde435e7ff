#!/usr/bin/env bash
# Installs the local AWS stand-ins that make run and make test need, so a fresh machine
# needs nothing installed by hand:
#   - Java 17 (Debian's openjdk-17-jre-headless, only when java is missing);
#   - Chromium (Debian's chromium, only when missing) for the console's browser test;
#   - local-aws-sqs from the npm lock (npm ci);
#   - DynamoDB Local: the official jar and its native libraries, taken from the pinned
#     amplify-dynamodb-simulator npm tarball (its integrity hash checked) without that
#     package's large dependency tree.
# Idempotent and safe to run from several processes at once (flock).
set -euo pipefail
cd "$(dirname "$0")"

DDB_PACKAGE=amplify-dynamodb-simulator@2.9.30
DDB_INTEGRITY=sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ==
DDB_DIR=.cache/dynamodb

mkdir -p .cache
exec 9>.cache/install.lock
flock 9

log() { echo "infra/install.sh: $*" >&2; }

if ! command -v java >/dev/null 2>&1; then
  log "java not found; installing openjdk-17-jre-headless"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

# The console's browser test (internal/dev/browser) drives Debian's chromium; like java,
# installed only when missing.
if [ ! -x /usr/bin/chromium ]; then
  log "chromium not found; installing Debian's chromium"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json .cache/package-lock.installed; then
  log "npm ci (local-aws-sqs)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json .cache/package-lock.installed
fi

if [ "$(cat "$DDB_DIR/.installed" 2>/dev/null)" != "$DDB_INTEGRITY" ]; then
  log "fetching DynamoDB Local from $DDB_PACKAGE"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(npm pack --silent --pack-destination "$tmp" "$DDB_PACKAGE" | tail -n1)
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/$tarball" | base64 -w0)"
  if [ "$got" != "$DDB_INTEGRITY" ]; then
    log "integrity mismatch for $DDB_PACKAGE: want $DDB_INTEGRITY, got $got"
    exit 1
  fi
  rm -rf "$DDB_DIR"
  mkdir -p "$DDB_DIR"
  tar -xzf "$tmp/$tarball" -C "$DDB_DIR" --strip-components=2 package/emulator
  echo "$DDB_INTEGRITY" >"$DDB_DIR/.installed"
fi
