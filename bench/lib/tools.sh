# Shared by run.sh and scripts/pgo-build.sh (sourced): the Debian packages that the fake fal
# and the load generator come from.

# Adds to the array NEED the packages of the fake fal (nginx with the echo module, which
# answers submits: bench/fake-fal/nginx.conf) and of wrk that are not installed.
fake_fal_missing() {
  command -v nginx >/dev/null || NEED+=(nginx-light)
  [ -f /usr/share/nginx/modules/ngx_http_echo_module.so ] || NEED+=(libnginx-mod-http-echo)
  command -v wrk >/dev/null || NEED+=(wrk)
}

# apt-gets the packages named, then stops the nginx Debian starts on port 80 with its package:
# nothing here uses it.
apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  systemctl stop nginx 2>/dev/null || { [ -f /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null; } || true
}
