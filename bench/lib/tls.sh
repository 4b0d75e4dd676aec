# Sourced by run.sh for --tls: a certificate for the fake fal, from a CA made for one run.

# Writes into directory $1: ca.pem (the CA every target is told to trust), fake.pem and
# fake.key (the fake's certificate, for DNS localhost and IP 127.0.0.1, signed by that CA:
# webpki, which fal-proxy verifies with, refuses a CA certificate as a server's own).
# Needs openssl.
make_fake_cert() {
  local d=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-fake-fal-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$d/fake.key" -out "$d/fake.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    > "$d/ext.cnf"
  openssl x509 -req -in "$d/fake.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext.cnf" -out "$d/fake.pem" 2>/dev/null
  [ -s "$d/fake.pem" ] || { echo "openssl could not make the fake's certificate" >&2; return 1; }
  # The CA has signed its one certificate: its key is of no further use.
  rm -f "$d/ca.key" "$d/ca.srl" "$d/fake.csr" "$d/ext.cnf"
}
