# Shared by run.sh, lib/single.sh and scripts/pgo-build.sh (sourced): the client key and the
# fal-proxy configuration every benchmark and training run uses. Needs BENCH.

# Runs `$1 keygen --id $2` into file $3; sets KEY (the client key) and KEY_SHA (its SHA-256, as
# the config wants it). Fails if the output is not understood.
client_key() {
  "$1" keygen --id "$2" > "$3"
  KEY=$(grep -o 'fpk_[A-Za-z0-9_-]*' "$3" | head -1)
  KEY_SHA=$(grep -o 'key_sha256 = "[0-9a-f]*"' "$3" | cut -d'"' -f2)
  [ -n "$KEY" ] && [ -n "$KEY_SHA" ] || { echo "keygen output not understood:" >&2; cat "$3" >&2; return 1; }
}

# Prints bench/fal-proxy.toml for listen address $1, fal at base URL $2 and key id $3 (with
# KEY_SHA from client_key).
fal_proxy_conf() {
  sed -e "s|@LISTEN@|$1|" -e "s|@QUEUE_URL@|$2|g" -e "s|@KEY_ID@|$3|" -e "s|@KEY_SHA256@|$KEY_SHA|" \
    "$BENCH/fal-proxy.toml"
}

# Writes to file $1 bench/fake-fal/nginx.conf with a second listener on address $2 that speaks
# cleartext HTTP/2 (prior knowledge), for fal-proxy's upstream in --h2c runs.
fake_conf_h2c() {
  sed -e "s|listen 127.0.0.1:9000 backlog=8192;|&\n        listen $2 http2 backlog=8192;|" \
    "$BENCH/fake-fal/nginx.conf" > "$1"
  grep -q "listen $2 http2" "$1" \
    || { echo "bench/fake-fal/nginx.conf no longer has the listen line --h2c extends" >&2; return 1; }
}

# Turns on fal.http2_prior_knowledge in the fal-proxy configuration file $1 (S5, --h2c).
prior_knowledge() {
  sed -i -e 's|^\[fal\]$|[fal]\nhttp2_prior_knowledge = true|' "$1"
  grep -q '^http2_prior_knowledge = true' "$1" \
    || { echo "bench/fal-proxy.toml no longer has the [fal] line --h2c extends" >&2; return 1; }
}
