#!/usr/bin/env bash
# Container smoke test: builds the repository's unmodified Dockerfile with podman and checks that
# the image behaves (non-root, mock mode serves, health check, refuses to start without FAL_KEY,
# no build tools, no sources, no secrets, small, stops promptly on SIGTERM).
#
# Meant for a fresh Debian bookworm machine, as root, with apt and crates.io reachable and no
# container registry: the base images the Dockerfile names are made locally (debootstrap, and the
# host's Rust toolchain) and tagged with those names. Nothing system-wide is configured: podman's
# storage and config live in the work folder, which also caches the base images between runs.
#
# Environment:
#   FAL_SMOKE_WORKDIR      work folder (default /tmp/fal-proxy-smoke)
#   FAL_SMOKE_CLEAN=1      wipe the work folder first (a cold run)
#   FAL_SMOKE_REBASE=1     remake the base images even when cached
#   FAL_SMOKE_MIRROR       Debian mirror for debootstrap (default: the one apt uses)
#   FAL_SMOKE_IMAGE        tag of the image under test (default localhost/fal-proxy:smoke)
#   FAL_SMOKE_MAX_MB       largest acceptable image size in MB (default 150)
#   FAL_SMOKE_STORAGE_DRIVER  podman storage driver (default overlay)
#   FAL_SMOKE_PRUNE=0      keep superseded build-cache images (default: prune them after the
#                          build, keeping the cache of this build, so the work folder stays bounded)
#   FAL_SMOKE_GIT_REF      build the sources of this commit (git archive) instead of the working
#                          tree, still with the working tree's Dockerfile and .dockerignore: for
#                          a checkout that others are editing (default: the working tree)
#
# Prints one PASS/FAIL line per check and exits non-zero when any check fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${FAL_SMOKE_WORKDIR:-/tmp/fal-proxy-smoke}
IMAGE=${FAL_SMOKE_IMAGE:-localhost/fal-proxy:smoke}
MAX_MB=${FAL_SMOKE_MAX_MB:-150}
DRIVER=${FAL_SMOKE_STORAGE_DRIVER:-overlay}
LABEL=fal-proxy-smoke
# A fake key handed to the build, which must not turn up anywhere in the image.
CANARY=fal-smoke-canary-0f8e2c41-not-a-real-key
SUBMIT_BODY='{"prompt":"a cat on a surfboard","image_urls":["https://example.com/a.png"]}'

T0=$(date +%s)
PASSES=0
FAILS=0
FAILED=()

log() { printf '== [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
pass() {
    printf 'PASS: %s\n' "$1"
    PASSES=$((PASSES + 1))
}
fail() {
    printf 'FAIL: %s%s\n' "$1" "${2:+ -- $2}"
    FAILS=$((FAILS + 1))
    FAILED+=("$1")
}
# A failure that leaves nothing further to check.
die() {
    fail "$@"
    summary
    exit 1
}
summary() {
    echo
    if ((FAILS == 0)); then
        echo "RESULT: PASS ($PASSES checks, $(($(date +%s) - T0))s)"
    else
        echo "RESULT: FAIL ($FAILS of $((PASSES + FAILS)) checks failed: ${FAILED[*]}; $(($(date +%s) - T0))s)"
    fi
}

# ---------------------------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "root" "run as root (apt, debootstrap and rootful podman need it)"
[[ -r /etc/debian_version ]] || die "debian host" "this script expects a Debian bookworm host"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

NEED=()
for pkg in podman runc debootstrap curl ca-certificates tar coreutils util-linux; do
    installed "$pkg" || NEED+=("$pkg")
done
if ((${#NEED[@]})); then
    log "installing ${NEED[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -qq || die "apt-get update"
    timeout 1800 apt-get install -y -qq --no-install-recommends "${NEED[@]}" >/dev/null \
        || die "apt-get install ${NEED[*]}"
fi
for cmd in podman runc debootstrap curl rustc; do
    command -v "$cmd" >/dev/null || die "tool $cmd" "not found on PATH"
done
pass "tools present (podman $(podman --version | awk '{print $3}'), runc, debootstrap)"

# ---------------------------------------------------------------------------------------------
# 2. A private podman: storage, config and run state under the work folder
# ---------------------------------------------------------------------------------------------
# Unmounts whatever is still mounted below a folder (deepest first), so it can be removed.
unmount_below() {
    local dir=$1 m
    [[ -d $dir ]] || return 0
    dir=$(readlink -f "$dir")
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}
remove_tree() {
    unmount_below "$1"
    rm -rf --one-file-system "$1"
}

write_config() {
    mkdir -p "$WORK"/{etc,storage,run,tmp,networks,base}
    cat >"$WORK/etc/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
    cat >"$WORK/etc/containers.conf" <<EOF
[containers]
# The machine cannot raise hard limits, so podman's defaults would be refused.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"

[network]
network_config_dir = "$WORK/networks"

[engine]
# crun fails here ("cgroups in hybrid mode not supported").
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
EOF
    # No search registries and no pulls: every image must already be local.
    cat >"$WORK/etc/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
}
# Removes the containers this script started (in this or an interrupted earlier run).
remove_containers() {
    local ids
    ids=$(timeout 60 podman ps -aq --filter "label=$LABEL" 2>/dev/null || true)
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        timeout 60 podman rm -f $ids >/dev/null 2>&1 || true
    fi
}

mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
[[ $WORK != / && $WORK == /*/* ]] || die "work folder" "refusing to use '$WORK'"
export CONTAINERS_STORAGE_CONF=$WORK/etc/storage.conf
export CONTAINERS_CONF=$WORK/etc/containers.conf
export CONTAINERS_REGISTRIES_CONF=$WORK/etc/registries.conf
write_config
if [[ ${FAL_SMOKE_CLEAN:-0} == 1 ]]; then
    log "wiping $WORK (FAL_SMOKE_CLEAN=1)"
    remove_containers
    remove_tree "$WORK"
    write_config
fi
unset FAL_KEY FAL_KEY_ID FAL_KEY_SECRET

graphroot=$(podman info --format '{{.Store.GraphRoot}}' 2>&1) || die "podman info" "$graphroot"
[[ $graphroot == "$WORK/storage" ]] || die "private podman storage" "graphroot is $graphroot"
pass "podman storage and config under $WORK"

MOUNTED_IMAGE=""
cleanup() {
    remove_containers
    if [[ -n $MOUNTED_IMAGE ]]; then
        timeout 60 podman image unmount "$MOUNTED_IMAGE" >/dev/null 2>&1 || true
    fi
    [[ -d ${ROOTFS:-} ]] && remove_tree "$ROOTFS"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup # leftovers of an interrupted earlier run

# ---------------------------------------------------------------------------------------------
# 3. Base images, tagged with the names the Dockerfile uses
# ---------------------------------------------------------------------------------------------
RUST_VERSION=$(sed -n 's/^ARG[[:space:]]\{1,\}RUST_VERSION=\([^[:space:]]*\).*/\1/p' "$REPO/Dockerfile" | head -n1)
[[ -n $RUST_VERSION ]] || die "Dockerfile RUST_VERSION" "no 'ARG RUST_VERSION=...' default"
mapfile -t FROMS < <(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/Ip' "$REPO/Dockerfile" \
    | sed "s/\${RUST_VERSION}/$RUST_VERSION/g; s/\$RUST_VERSION/$RUST_VERSION/g")
DEBIAN_TAG=docker.io/library/debian:bookworm-slim
RUST_TAG=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
STAGES=" $(sed -n 's/^FROM[[:space:]].*[[:space:]]AS[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/Ip' "$REPO/Dockerfile" | tr '\n' ' ')"
for f in "${FROMS[@]}"; do
    [[ $f == "$DEBIAN_TAG" || $f == "$RUST_TAG" || $STAGES == *" $f "* ]] \
        || die "Dockerfile base images" "FROM $f is neither $DEBIAN_TAG nor $RUST_TAG"
done

# "URI SUITE" for every enabled deb source with the main component, one-line and deb822 files.
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                uri = $i; suite = $(i + 1); main = 0
                for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
                if (main) print uri, suite
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk 'function put(k, v) {
                 if (k == "types") types = types " " v
                 else if (k == "uris") uris = uris " " v
                 else if (k == "suites") suites = suites " " v
                 else if (k == "components") comps = comps " " v
                 else if (k == "enabled") enabled = tolower(v)
             }
             function flush(   n, m, i, j, U, S) {
                 if (types ~ /(^| )deb( |$)/ && comps ~ /(^| )main( |$)/ && enabled !~ /^ *no/) {
                     n = split(uris, U, " "); m = split(suites, S, " ")
                     for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print U[i], S[j]
                 }
                 types = uris = suites = comps = enabled = key = ""
             }
             /^[[:space:]]*#/ { next }
             /^[[:space:]]*$/ { flush(); next }
             /^[[:space:]]/ { v = $0; gsub(/^[[:space:]]+|[[:space:]]+$/, "", v); put(key, v); next }
             { key = tolower($0); sub(/:.*/, "", key); v = $0; sub(/^[^:]*:[[:space:]]*/, "", v)
               gsub(/[[:space:]]+$/, "", v); put(key, v) }
             END { flush() }' "$f"
    done
}

# The host's toolchain whose rustc matches the Dockerfile's RUST_VERSION (else the default one).
find_toolchain() {
    local home name dir
    home=${RUSTUP_HOME:-$HOME/.rustup}
    if command -v rustup >/dev/null; then
        while read -r name _; do
            dir=$home/toolchains/$name
            [[ -x $dir/bin/rustc && -x $dir/bin/cargo ]] || continue
            if "$dir/bin/rustc" --version | grep -q "^rustc ${RUST_VERSION//./\\.}[. ]"; then
                readlink -f "$dir"
                return 0
            fi
        done < <(rustup toolchain list)
    fi
    dir=$(rustc --print sysroot)
    [[ -x $dir/bin/rustc && -x $dir/bin/cargo ]] || return 1
    readlink -f "$dir"
}

image_exists() { podman image exists "$1" 2>/dev/null; }

# 3a. debian:bookworm-slim from debootstrap, trimmed like the official slim image.
make_debian() {
    local mirror sources
    sources=$(apt_sources | awk '$1 ~ /^https?:\/\// && $2 ~ /^bookworm(-updates|-security)?$/' | awk '!seen[$0]++')
    mirror=${FAL_SMOKE_MIRROR:-$(awk '$2 == "bookworm" { print $1; exit }' <<<"$sources")}
    [[ -n $mirror ]] || die "debian mirror" "no bookworm source in /etc/apt; set FAL_SMOKE_MIRROR"
    [[ -n $sources ]] || sources="$mirror bookworm"
    log "debootstrap minbase bookworm from $mirror"

    ROOTFS=$WORK/base/rootfs
    remove_tree "$ROOTFS"
    local include=()
    [[ $mirror == https:* ]] && include=(--include=ca-certificates)
    if ! timeout 1800 debootstrap --variant=minbase "${include[@]}" bookworm "$ROOTFS" "$mirror" \
        >"$WORK/base/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/base/debootstrap.log" >&2
        die "debootstrap" "see $WORK/base/debootstrap.log"
    fi

    # apt sources: the host's bookworm mirrors (main only).
    awk '{ print "deb " $1 " " $2 " main" }' <<<"$sources" >"$ROOTFS/etc/apt/sources.list"

    # Keep documentation, man pages and translations out of every later package install ...
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# Container image: no documentation except copyright notices, no man pages, no translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # ... and downloaded packages and apt's binary caches out of every layer.
    cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
// Container image: delete downloaded packages after each dpkg run and keep no binary caches.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::Languages "none";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-autoremove-suggests"
    # No service may start during an image build.
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

    # ... then trim what debootstrap already installed.
    find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda}/*
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/archives/partial/* \
        "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/var/cache/man/* \
        "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
    find "$ROOTFS/var/log" -type f -delete
    : >"$ROOTFS/etc/resolv.conf"
    printf 'localhost\n' >"$ROOTFS/etc/hostname"

    # An intercepting proxy's CAs, so apt (https) and cargo inside the builds trust it.
    if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
        mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
        if [[ -x $ROOTFS/usr/sbin/update-ca-certificates ]]; then
            chroot "$ROOTFS" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
        fi
    fi

    log "importing $DEBIAN_TAG ($(du -sm "$ROOTFS" | cut -f1) MB)"
    tar --numeric-owner -C "$ROOTFS" -cf - . \
        | timeout 600 podman import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' - "$DEBIAN_TAG" >/dev/null \
        || die "podman import $DEBIAN_TAG"
    remove_tree "$ROOTFS"
    ROOTFS=""
}

# 3b. rust:<version>-slim-bookworm from the local debian image and the host's toolchain.
make_rust() {
    local tc=$1 rustc_version=$2 ctx=$WORK/base/rust
    log "building $RUST_TAG from $tc ($rustc_version)"
    mkdir -p "$ctx"
    cat >"$ctx/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The host's toolchain, bind-mounted at /hosttc during the build; its documentation stays behind.
RUN mkdir -p /usr/local/rust /usr/local/cargo/bin \
    && cp -a /hosttc/bin /hosttc/lib /usr/local/rust/ \
    && if [ -d /hosttc/libexec ]; then cp -a /hosttc/libexec /usr/local/rust/; fi \
    && rm -rf /usr/local/rust/lib/rustlib/src \
    && rustc --version && cargo --version
EOF
    if ! timeout 1800 podman build --pull=never --network host --format docker \
        -v "$tc:/hosttc:ro" --label "$LABEL.rustc=$rustc_version" \
        -t "$RUST_TAG" -f "$ctx/Containerfile" "$ctx" >"$WORK/base/rust-build.log" 2>&1; then
        tail -n 30 "$WORK/base/rust-build.log" >&2
        die "build $RUST_TAG" "see $WORK/base/rust-build.log"
    fi
}

ROOTFS=""
TB=$(date +%s)
# What the cached debian image was made from: the mirror and the host's extra CAs.
base_key() {
    {
        echo "${FAL_SMOKE_MIRROR:-}"
        apt_sources
        find /usr/local/share/ca-certificates -type f -exec sha256sum {} + 2>/dev/null | sort
    } | sha256sum | cut -d' ' -f1
}
BASE_KEY=$(base_key)
if [[ ${FAL_SMOKE_REBASE:-0} == 1 ]] || ! image_exists "$DEBIAN_TAG" \
    || [[ $(cat "$WORK/base/debian.key" 2>/dev/null) != "$BASE_KEY" ]]; then
    podman rmi -f "$RUST_TAG" "$DEBIAN_TAG" >/dev/null 2>&1 || true
    rm -f "$WORK/base/debian.key"
    make_debian
    echo "$BASE_KEY" >"$WORK/base/debian.key"
    pass "base image $DEBIAN_TAG made ($(($(date +%s) - TB))s)"
else
    pass "base image $DEBIAN_TAG (cached)"
fi

TC=$(find_toolchain) || die "rust toolchain" "no usable toolchain (rustup toolchain list / rustc --print sysroot)"
TC_VERSION=$("$TC/bin/rustc" --version)
[[ $TC_VERSION == "rustc $RUST_VERSION"[.\ ]* ]] \
    || echo "warning: host toolchain is '$TC_VERSION', the Dockerfile asks for Rust $RUST_VERSION" >&2
TB=$(date +%s)
if [[ ${FAL_SMOKE_REBASE:-0} == 1 ]] || ! image_exists "$RUST_TAG" \
    || [[ $(podman image inspect --format "{{index .Labels \"$LABEL.rustc\"}}" "$RUST_TAG") != "$TC_VERSION" ]]; then
    make_rust "$TC" "$TC_VERSION"
    pass "builder image $RUST_TAG made from $TC ($(($(date +%s) - TB))s)"
else
    pass "builder image $RUST_TAG (cached, $TC_VERSION)"
fi

# ---------------------------------------------------------------------------------------------
# 4. The image under test, from the repository's Dockerfile
# ---------------------------------------------------------------------------------------------
CONTEXT=$REPO
if [[ -n ${FAL_SMOKE_GIT_REF:-} ]]; then
    CONTEXT=$WORK/context
    remove_tree "$CONTEXT"
    mkdir -p "$CONTEXT"
    git -C "$REPO" archive --format=tar "$FAL_SMOKE_GIT_REF" | tar -x -C "$CONTEXT" \
        || die "git archive $FAL_SMOKE_GIT_REF"
    cp "$REPO/Dockerfile" "$CONTEXT/Dockerfile"
    [[ -f $REPO/.dockerignore ]] && cp "$REPO/.dockerignore" "$CONTEXT/.dockerignore"
    # podman's COPY cache keys include mtimes, and git archive stamps every file with the commit
    # time: one fixed time keeps unchanged files (Cargo.toml, Cargo.lock) cached across commits.
    find "$CONTEXT" -exec touch -h -d '2000-01-01 00:00:00 UTC' {} +
    echo "context: $FAL_SMOKE_GIT_REF ($(git -C "$REPO" rev-parse --short "$FAL_SMOKE_GIT_REF")) with the working tree's Dockerfile"
fi
log "building $IMAGE from $CONTEXT/Dockerfile"
TB=$(date +%s)
# FAL_KEY is set (to a canary) for the build, as on a developer's machine, and passed as a build
# argument: neither may reach the image.
if FAL_KEY=$CANARY timeout 3600 podman build --pull=never --network host --format docker \
    --build-arg "FAL_KEY=$CANARY" -t "$IMAGE" -f "$CONTEXT/Dockerfile" "$CONTEXT" \
    >"$WORK/build.log" 2>&1; then
    pass "podman build of the Dockerfile ($(($(date +%s) - TB))s, log $WORK/build.log)"
else
    tail -n 40 "$WORK/build.log" >&2
    die "podman build of the Dockerfile" "see $WORK/build.log"
fi

# Superseded build cache: tag this build's build stage so its layers (the dependency cache) stay,
# then drop untagged leaves until none is left; the base images and both tags keep their chains.
if [[ ${FAL_SMOKE_PRUNE:-1} == 1 ]]; then
    if timeout 600 podman build --pull=never --network host --format docker --target build \
        --build-arg "FAL_KEY=$CANARY" -t "$IMAGE-build-cache" -f "$CONTEXT/Dockerfile" "$CONTEXT" \
        >>"$WORK/build.log" 2>&1; then
        for _ in $(seq 1 30); do
            [[ -n $(podman images -q --filter dangling=true) ]] || break
            timeout 300 podman image prune -f >/dev/null 2>&1 || break
        done
    fi
    echo "podman storage: $(du -sh "$WORK/storage" 2>/dev/null | cut -f1)"
fi

# ---------------------------------------------------------------------------------------------
# 5. Checks
# ---------------------------------------------------------------------------------------------
log "checking $IMAGE"

# --- static: config, size, contents, secrets
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
if [[ $user == 10001 || $user == 10001:* ]]; then
    pass "image USER is $user"
else
    fail "image USER is 10001" "got '$user'"
fi

hc=$(podman image inspect --format '{{json .HealthCheck}}' "$IMAGE" 2>/dev/null || true)
if [[ $hc == *healthcheck* ]]; then
    pass "HEALTHCHECK kept in the image ($hc)"
else
    fail "HEALTHCHECK kept in the image" "got '$hc'"
fi

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(((size + 524288) / 1048576))
echo "image size: $size_mb MB ($size bytes)"
if ((size_mb <= MAX_MB)); then
    pass "image size $size_mb MB <= $MAX_MB MB"
else
    fail "image size $size_mb MB <= $MAX_MB MB"
fi

meta=$({
    podman image inspect "$IMAGE"
    podman history --no-trunc --format '{{.CreatedBy}} {{.Comment}}' "$IMAGE"
} 2>&1)
if grep -q "$CANARY" <<<"$meta"; then
    fail "no FAL_KEY in image config/history" "the build's FAL_KEY value is recorded"
elif grep -Eq 'FAL_KEY(_ID|_SECRET)?=' <<<"$meta"; then
    fail "no FAL_KEY in image config/history" "$(grep -Eo '[^"]*FAL_KEY(_ID|_SECRET)?=[^"]*' <<<"$meta" | head -n3)"
else
    pass "no FAL_KEY in image config/history"
fi

if MNT=$(podman image mount "$IMAGE" 2>&1); then
    MOUNTED_IMAGE=$IMAGE
    # Executables only (gcc-12-base, the runtime's libgcc, legitimately has files named gcc-*).
    tools=$(find "$MNT" -xdev \( -type f -o -type l \) \( -path '*/bin/*' -o -path '*/libexec/*' \) \
        \( -name cargo -o -name rustc -o -name rustup -o -name gcc -o -name 'gcc-[0-9]*' -o -name cc \
        -o -name 'x86_64-linux-gnu-gcc*' -o -name c++ -o -name ld -o -name 'cc1*' \) \
        -printf '/%P\n' 2>/dev/null)
    if [[ -z $tools ]]; then
        pass "no cargo, rustc, gcc, cc in the image"
    else
        fail "no cargo, rustc, gcc, cc in the image" "$(tr '\n' ' ' <<<"$tools")"
    fi
    src=$(find "$MNT" -xdev \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -printf '/%P\n' 2>/dev/null | head -n5)
    if [[ ! -e $MNT/src && -z $src ]]; then
        pass "no source tree in the image (/src absent, no *.rs, no Cargo.toml)"
    else
        fail "no source tree in the image" "$([[ -e $MNT/src ]] && echo '/src exists') $(tr '\n' ' ' <<<"$src")"
    fi
    if grep -rlF --exclude-dir=proc --exclude-dir=sys "$CANARY" "$MNT" >/dev/null 2>&1; then
        fail "no FAL_KEY value in the image files" "$(grep -rlF "$CANARY" "$MNT" | sed "s|^$MNT||" | head -n3)"
    else
        pass "no FAL_KEY value in the image files"
    fi
    if [[ -x $MNT/usr/local/bin/fal-proxy ]]; then
        pass "binary at /usr/local/bin/fal-proxy"
    else
        fail "binary at /usr/local/bin/fal-proxy"
    fi
    timeout 60 podman image unmount "$IMAGE" >/dev/null 2>&1 || true
    MOUNTED_IMAGE=""
else
    fail "podman image mount" "$MNT"
fi

# --- dynamic: the proxy in mock mode
# A port nothing on 127.0.0.1 answers on.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

PORT=$(free_port) || die "free port"
CTR=fal-smoke-mock-$$
log "running $IMAGE --mock on 127.0.0.1:$PORT"
if out=$(timeout 120 podman run -d --name "$CTR" --label "$LABEL=1" --network host \
    -e "FAL_PROXY_LISTEN=127.0.0.1:$PORT" "$IMAGE" --mock 2>&1); then
    pass "container started (--mock)"
else
    die "container started (--mock)" "$out"
fi

# Waits (at most 30 s) for /healthz of container $1 on port $2; prints the body; fails early when
# the container exits.
wait_healthz() {
    local ctr=$1 port=$2 body
    for _ in $(seq 1 120); do
        if body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null); then
            echo "$body"
            return 0
        fi
        [[ $(podman inspect --format '{{.State.Running}}' "$ctr" 2>/dev/null) == true ]] || return 1
        sleep 0.25
    done
    return 1
}
ok_body() { grep -Eq '"status"[[:space:]]*:[[:space:]]*"ok"' <<<"$1"; }
logs_of() { podman logs --tail 20 "$1" 2>&1 | tr '\n' ' '; }

body=$(wait_healthz "$CTR" "$PORT") || true
if ok_body "$body"; then
    pass "GET /healthz answers $body"
else
    fail "GET /healthz answers {\"status\":\"ok\"}" "got '${body}'; logs: $(logs_of "$CTR")"
fi

pid=$(podman inspect --format '{{.State.Pid}}' "$CTR" 2>/dev/null || echo 0)
puid=$( ((pid > 0)) && stat -c %u "/proc/$pid" 2>/dev/null || echo "?")
euid=$(timeout 30 podman exec "$CTR" /usr/bin/id -u 2>&1 || true)
if [[ $puid == 10001 && $euid == 10001 ]]; then
    pass "runs as uid 10001 (process uid $puid, exec uid $euid)"
else
    fail "runs as uid 10001" "process uid $puid, exec uid $euid"
fi

code=$(curl -sS --max-time 15 -o "$WORK/submit.json" -w '%{http_code}' \
    -H 'content-type: application/json' --data "$SUBMIT_BODY" \
    "http://127.0.0.1:$PORT/queue/fal-ai/nano-banana-pro/edit" 2>&1 || true)
if [[ $code == 200 ]] && grep -q '"request_id"' "$WORK/submit.json"; then
    pass "POST /queue/fal-ai/nano-banana-pro/edit -> 200 with request_id"
else
    fail "POST /queue/fal-ai/nano-banana-pro/edit -> 200 with request_id" \
        "status $code, body $(head -c 300 "$WORK/submit.json" 2>/dev/null)"
fi

if out=$(timeout 60 podman healthcheck run "$CTR" 2>&1); then
    pass "podman healthcheck run${out:+ ($out)}"
else
    fail "podman healthcheck run" "$out"
fi
if out=$(timeout 60 podman exec "$CTR" /usr/local/bin/fal-proxy healthcheck 2>&1); then
    pass "fal-proxy healthcheck in the container exits 0"
else
    fail "fal-proxy healthcheck in the container exits 0" "$out"
fi

# SIGTERM (podman stop) must drain and exit 0 well before podman's kill timeout.
t_start=$(date +%s%N)
timeout 60 podman stop -t 20 "$CTR" >/dev/null 2>&1 || true
t_ms=$((($(date +%s%N) - t_start) / 1000000))
ec=$(podman inspect --format '{{.State.ExitCode}}' "$CTR" 2>/dev/null || echo "?")
if [[ $ec == 0 ]] && ((t_ms < 10000)); then
    pass "podman stop (SIGTERM): exit code 0 after ${t_ms} ms"
else
    fail "podman stop (SIGTERM) exits 0 within 10 s" "exit code $ec after ${t_ms} ms"
fi
podman rm -f "$CTR" >/dev/null 2>&1 || true

# --- without --mock and without FAL_KEY: must refuse to start
PORT2=$(free_port) || die "free port"
CTR2=fal-smoke-nokey-$$
rc=0
out=$(timeout 60 podman run --name "$CTR2" --label "$LABEL=1" --network host \
    -e "FAL_PROXY_LISTEN=127.0.0.1:$PORT2" "$IMAGE" 2>&1) || rc=$?
podman rm -f "$CTR2" >/dev/null 2>&1 || true
if ((rc == 124)); then
    fail "refuses to start without FAL_KEY" "still running after 60 s"
elif ((rc != 0)) && grep -q FAL_KEY <<<"$out"; then
    pass "refuses to start without FAL_KEY (exit $rc: $(grep -m1 FAL_KEY <<<"$out" | cut -c1-160))"
else
    fail "refuses to start without FAL_KEY" "exit $rc, output: $(grep -v '^time=' <<<"$out" | head -c 400)"
fi

# --- the image's default command (serve with the shipped config) given a key: starts as the
# non-root user, keeps its store in the documented volume folder, never logs the key. fal's hosts
# are pointed at a closed loopback port, so nothing leaves the machine.
PORT3=$(free_port) || die "free port"
CTR3=fal-smoke-serve-$$
RUNTIME_SECRET=fal-smoke-runtime-secret-5b21c7
if out=$(timeout 120 podman run -d --name "$CTR3" --label "$LABEL=1" --network host \
    -e "FAL_PROXY_LISTEN=127.0.0.1:$PORT3" -e "FAL_KEY=fal-smoke-id:$RUNTIME_SECRET" \
    -e FAL_PROXY_FAL__QUEUE_URL=http://127.0.0.1:9 -e FAL_PROXY_FAL__RUN_URL=http://127.0.0.1:9 \
    -e FAL_PROXY_FAL__REST_URL=http://127.0.0.1:9 "$IMAGE" 2>&1); then
    body=$(wait_healthz "$CTR3" "$PORT3") || true
    if ok_body "$body"; then
        pass "default command (serve --config /etc/fal-proxy/fal-proxy.toml) with FAL_KEY answers /healthz"
    else
        fail "default command with FAL_KEY answers /healthz" "got '$body'; logs: $(logs_of "$CTR3")"
    fi
    if out=$(timeout 30 podman exec "$CTR3" sh -c 'ls -d /var/lib/fal-proxy/data/* | head -n3' 2>&1) && [[ -n $out ]]; then
        pass "store written under /var/lib/fal-proxy ($(tr '\n' ' ' <<<"$out"))"
    else
        fail "store written under /var/lib/fal-proxy" "$out"
    fi
    timeout 60 podman stop -t 20 "$CTR3" >/dev/null 2>&1 || true
    if podman logs "$CTR3" 2>&1 | grep -qF "$RUNTIME_SECRET"; then
        fail "the fal key is not logged"
    else
        pass "the fal key is not logged"
    fi
else
    fail "default command with FAL_KEY starts" "$out"
fi
podman rm -f "$CTR3" >/dev/null 2>&1 || true

echo "note: $IMAGE holds this host's extra CA certificates (if any): never push it anywhere."
summary
((FAILS == 0))
