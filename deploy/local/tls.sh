#!/usr/bin/env bash
# Local certificate authority and server certificates for the GLV stack (openssl only).
#
# Usage: deploy/local/tls.sh DIR
#   Creates what is missing in DIR (idempotent; re-running changes nothing that is valid):
#     ca.crt, ca.key                    a private CA (10 years)
#     pg-server.crt, pg-server.key      PostgreSQL server (CN=localhost)
#     kafka-server.crt, .key, .p12      Kafka SASL_SSL listener (CN=glv-kafka-broker)
#     kafka-controller.crt, .key, .p12  Kafka controller listener, mutual TLS: server *and*
#                                       client certificate (CN=glv-kafka-controller)
#     keystore.password                 password of the two PKCS12 keystores
#   Every server certificate is valid for IP:127.0.0.1 and DNS:localhost. Keys, keystores
#   and the password are 0600; certificates 0644. A certificate that expires within 30 days,
#   no longer matches its key or is not signed by DIR/ca.crt is reissued (a new CA reissues
#   everything). Run it with another DIR for a second, unrelated (untrusted) CA.
#
# Environment: GLV_TLS_CA_DAYS (3650), GLV_TLS_DAYS (825).
set -euo pipefail

usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 2; }
(($# == 1)) || usage
case "$1" in -h | --help | help) usage ;; esac

DIR="$1"
CA_DAYS="${GLV_TLS_CA_DAYS:-3650}"
DAYS="${GLV_TLS_DAYS:-825}"
RENEW_SECONDS=$((30 * 86400))
SAN="IP:127.0.0.1,DNS:localhost"

say() { printf '%s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
# Traversable (PostgreSQL reads its certificate here as its own OS user); the keys are not.
chmod 0755 "$DIR"

# One writer per directory (stack.sh and tests may run this concurrently).
exec 9>"$DIR/.tls.lock"
flock -w 120 9 || die "could not lock $DIR/.tls.lock"

umask 077
TMP="$(mktemp -d "$DIR/.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }

# Cert exists, is not about to expire and belongs to its key.
pair_ok() {
  local crt="$1" key="$2"
  [[ -s "$crt" && -s "$key" ]] || return 1
  openssl x509 -noout -checkend "$RENEW_SECONDS" -in "$crt" >/dev/null 2>&1 || return 1
  [[ "$(openssl x509 -noout -pubkey -in "$crt" 2>/dev/null)" == "$(openssl pkey -pubout -in "$key" 2>/dev/null)" ]]
}

ensure_ca() {
  pair_ok "$DIR/ca.crt" "$DIR/ca.key" && return 0
  say "==> TLS: creating a local CA in $DIR"
  new_key "$TMP/ca.key"
  # A random suffix in the name: two CAs made by this script are told apart at a glance.
  openssl req -x509 -new -key "$TMP/ca.key" -sha256 -days "$CA_DAYS" -set_serial "$(serial)" \
    -subj "/O=GLV local stack/CN=GLV local CA $(openssl rand -hex 4)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$TMP/ca.crt"
  chmod 0644 "$TMP/ca.crt"
  mv "$TMP/ca.key" "$DIR/ca.key"
  mv "$TMP/ca.crt" "$DIR/ca.crt"
}

# leaf NAME CN EXTENDED_KEY_USAGE
leaf() {
  local name="$1" cn="$2" eku="$3" crt="$DIR/$1.crt" key="$DIR/$1.key"
  if pair_ok "$crt" "$key" && openssl verify -CAfile "$DIR/ca.crt" "$crt" >/dev/null 2>&1; then
    return 0
  fi
  say "==> TLS: issuing $name.crt (CN=$cn, $SAN)"
  new_key "$TMP/$name.key"
  openssl req -new -key "$TMP/$name.key" -subj "/CN=$cn" -out "$TMP/$name.csr"
  cat >"$TMP/$name.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = $eku
subjectAltName = $SAN
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EOF
  openssl x509 -req -in "$TMP/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -set_serial "$(serial)" -sha256 -days "$DAYS" -extfile "$TMP/$name.ext" \
    -out "$TMP/$name.crt" 2>/dev/null
  chmod 0644 "$TMP/$name.crt"
  mv "$TMP/$name.key" "$key"
  mv "$TMP/$name.crt" "$crt"
  rm -f "$DIR/$name.p12" # stale keystore: rebuilt below
}

# A PKCS12 keystore (key + certificate + CA) for the Kafka broker, same password for all.
keystore() {
  local name="$1" p12="$DIR/$1.p12"
  [[ -s "$p12" ]] && openssl pkcs12 -in "$p12" -noout -passin "file:$DIR/keystore.password" 2>/dev/null && return 0
  openssl pkcs12 -export -name "$name" -inkey "$DIR/$name.key" -in "$DIR/$name.crt" \
    -certfile "$DIR/ca.crt" -passout "file:$DIR/keystore.password" -out "$TMP/$name.p12"
  mv "$TMP/$name.p12" "$p12"
}

ensure_ca
leaf pg-server localhost serverAuth
leaf kafka-server glv-kafka-broker serverAuth,clientAuth
leaf kafka-controller glv-kafka-controller serverAuth,clientAuth
if [[ ! -s "$DIR/keystore.password" ]]; then
  openssl rand -hex 24 >"$TMP/keystore.password"
  mv "$TMP/keystore.password" "$DIR/keystore.password"
  rm -f "$DIR"/kafka-*.p12
fi
keystore kafka-server
keystore kafka-controller
# Whatever an earlier run or a strict umask left: keys private, certificates public.
chmod 0600 "$DIR/ca.key" "$DIR"/*-server.key "$DIR/kafka-controller.key" "$DIR"/*.p12 "$DIR/keystore.password"
chmod 0644 "$DIR"/*.crt
