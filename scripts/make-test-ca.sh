#!/bin/sh
# Makes a CA and a certificate for each host, for peer TLS in tests and the
# demo ([cluster] tls-ca, tls-cert, tls-key):
#   scripts/make-test-ca.sh DIR HOST...
# DIR/ca.pem (and its key ca-key.pem), and per HOST DIR/HOST.pem and
# DIR/HOST-key.pem, whose certificate names HOST as CN and DNS SAN. EC P-256
# keys, valid 30 days: for tests and labs only.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR HOST..." >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
if [ ! -f ca.pem ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
                -subj "/CN=svemig test CA $(basename "$PWD")" -keyout ca-key.pem -out ca.pem \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
                2>/dev/null
fi
for host in "$@"; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
                -keyout "$host-key.pem" -out "$host.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' \
                "$host" >"$host.ext"
        openssl x509 -req -in "$host.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
                -extfile "$host.ext" -out "$host.pem" 2>/dev/null
        rm -f "$host.csr" "$host.ext"
done
