# Shared by profile.sh and callgrind.sh (sourced): one fake upstream and one fal-proxy on
# 127.0.0.1:8093, configured as run.sh configures them. Needs BENCH, BIN and RUN. fal-proxy
# reaches the fake over cleartext HTTP/2, as run.sh --h2c has it (a profile of fal-proxy
# alone, which the fake's cleartext details of item 26 in bench/README.md do not decide);
# BENCH_H1=1 has it speak HTTP/1.1, as run.sh --h1 does.
. "$BENCH/lib/conf.sh"

# Writes the fake's files, a client key (sets KEY and KEY_SHA) and $RUN/fal-proxy.toml, and starts the fake
# (the caller's trap stops it through $RUN/fake/nginx.pid).
single_prepare() {
  mkdir -p "$RUN/fake/tmp"
  python3 "$BENCH/fake-fal/gen.py" "$RUN/fake" > /dev/null
  client_key "$BIN" bench "$RUN/keygen.txt"
  local conf=$BENCH/fake-fal/nginx.conf
  if [ "${BENCH_H1:-0}" != 1 ]; then
    conf=$RUN/fake/nginx.conf
    fake_conf_h2c "$conf" 127.0.0.1:9001
    fal_proxy_conf 127.0.0.1:8093 http://127.0.0.1:9001 bench > "$RUN/fal-proxy.toml"
    prior_knowledge "$RUN/fal-proxy.toml"
  else
    fal_proxy_conf 127.0.0.1:8093 http://127.0.0.1:9000 bench > "$RUN/fal-proxy.toml"
  fi
  nginx -p "$RUN/fake" -c "$conf" -e "$RUN/fake/error.log"
}

# Submits once through the running proxy, then exports what lib/req.lua needs for scenario $1
# (S1-S4; S1 and S4 read the job just submitted).
single_scenario() {
  local q=https://queue.fal.run/fal-ai/nano-banana-pro rid m p b=""
  rid=$(curl -s -XPOST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -H "x-fal-target-url: $q/edit" \
    --data-binary @"$RUN/fake/bodies/s2.json" http://127.0.0.1:8093/api/fal/proxy \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_id"])')
  case $1 in
    S1) m=GET; p="requests/$rid/status" ;;
    S4) m=GET; p="requests/$rid" ;;
    S2) m=POST; p=edit; b=$RUN/fake/bodies/s2.json ;;
    S3) m=POST; p=edit; b=$RUN/fake/bodies/s3.json ;;
    *) echo "unknown scenario $1" >&2; return 2 ;;
  esac
  export BENCH_METHOD=$m BENCH_TARGET="$q/$p" BENCH_AUTH="Bearer $KEY" BENCH_BODY="$b"
}
