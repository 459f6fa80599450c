#!/usr/bin/env bash
# Prove the test client (tests/common/xmpp) against a private Prosody on loopback.
#
# Installs Debian's prosody if missing (without starting its system service), runs an
# instance with its own config, data, pid file, certificate and ports (127.0.0.1:15222 STARTTLS,
# 127.0.0.1:15223 Direct TLS), registers alice/alicepw and bob/bobpw, runs
# `cargo test --test prosody -- --ignored`, then stops the instance by its PID.
# Usage: tests/interop/prosody.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v prosody >/dev/null; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prosody
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

PORT=${PROSODY_PORT:-15222}
TLS_PORT=${PROSODY_TLS_PORT:-15223}
D=$(mktemp -d /tmp/oriole-prosody.XXXXXX)
mkdir -p "$D/data" "$D/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/certs/localhost.key" \
    -out "$D/certs/localhost.crt" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" 2>/dev/null
cat > "$D/prosody.cfg.lua" <<CFG
admins = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "time";
    "vcard_legacy"; "private"; "offline"; "posix" }
modules_disabled = { "s2s" }
interfaces = { "127.0.0.1" }
c2s_ports = { $PORT }
c2s_direct_tls_ports = { $TLS_PORT }
s2s_ports = { }
http_ports = { }
https_ports = { }
data_path = "$D/data"
pidfile = "$D/prosody.pid"
c2s_require_encryption = true
authentication = "internal_plain"
log = { info = "$D/prosody.log" }
daemonize = false
certificates = "$D/certs"
ssl = { key = "$D/certs/localhost.key"; certificate = "$D/certs/localhost.crt" }
c2s_direct_tls_ssl = { key = "$D/certs/localhost.key"; certificate = "$D/certs/localhost.crt" }
VirtualHost "localhost"
CFG
chown -R prosody:prosody "$D"
runuser -u prosody -- prosodyctl --config "$D/prosody.cfg.lua" register alice localhost alicepw
runuser -u prosody -- prosodyctl --config "$D/prosody.cfg.lua" register bob localhost bobpw

setpriv --reuid=prosody --regid=prosody --init-groups -- \
    prosody --config "$D/prosody.cfg.lua" -F > "$D/stdout.log" 2>&1 &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

for _ in $(seq 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
    sleep 0.1
done

ORIOLE_TEST_PROSODY=127.0.0.1:$PORT ORIOLE_TEST_PROSODY_TLS=127.0.0.1:$TLS_PORT \
    cargo test --test prosody "$@" -- --ignored
