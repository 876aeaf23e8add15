#!/usr/bin/env bash
# A self-signed TLS pair for development: certs/make-dev-tls.sh [HOSTNAME] [DIR]
# Writes DIR/cert.pem and DIR/key.pem (0600). Never for production. See certs/README.md.
set -euo pipefail
host="${1:-localhost}"
dir="${2:-$(dirname "$0")/tls}"
command -v openssl >/dev/null || { echo "make-dev-tls.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
case "$host" in *[!A-Za-z0-9.-]*|"") echo "make-dev-tls.sh: $host is not a host name" >&2; exit 1;; esac
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj "/CN=$host" \
    -addext "subjectAltName=DNS:$host,IP:127.0.0.1,IP:::1" 2>/dev/null
chmod 600 "$dir/key.pem"
chmod 644 "$dir/cert.pem"
echo "wrote $dir/cert.pem and $dir/key.pem (self-signed for $host; development only)"
echo "use them with:  [tls] cert = \"$dir/cert.pem\"  key = \"$dir/key.pem\""
