#!/usr/bin/env bash
# Makes the compose deployment's TLS material in this folder (never committed): a CA, the broker's
# certificate (CN=kafka, for the services and the host) and the admin certificate (CN=facet-admin) that
# only the set-up job mounts. Run once before `docker compose up`; rerun to rotate.
set -euo pipefail
cd "$(dirname "$0")"
days=${DAYS:-825}
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=facet-kafka-ca" -keyout ca.key -out ca.crt
issue() {  # issue NAME CN SAN
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile "$1.ext" -out "$1.crt"
  # Kafka's PEM keystore: the private key (PKCS#8, unencrypted) and the certificate chain in one file.
  openssl pkcs8 -topk8 -nocrypt -in "$1.key" | cat - "$1.crt" ca.crt > "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
issue kafka kafka "DNS:kafka,DNS:localhost"
issue admin facet-admin "DNS:facet-admin"
chmod 600 ./*.key ./*.pem
echo "wrote ca.crt, kafka.pem, admin.pem in $(pwd)"
