# fal-proxy container image: a multi-stage build whose runtime stage holds only the binary,
# CA certificates and the commented default config. No compiler, no sources, no secrets.
#
#   docker build -t fal-proxy .
#   docker run --rm -p 8080:8080 fal-proxy --mock                      # embedded fake of fal
#   docker run --rm -p 8080:8080 -e FAL_KEY=... -v fal-proxy-data:/var/lib/fal-proxy fal-proxy
#   docker run --rm -p 8080:8080 -v $PWD/my.toml:/etc/fal-proxy/fal-proxy.toml:ro \
#       -v /run/secrets/fal_key:/run/secrets/fal_key:ro fal-proxy serve --config /etc/fal-proxy/fal-proxy.toml

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# PGO=1 (the default): a profile-guided build (scripts/pgo-build.sh: an instrumented build, a
# training run of about a minute against the benchmark's fake fal on the build's loopback,
# then the optimized build). It is the build bench/ measures; it takes about twice as long as
# a plain one. PGO=0: a plain `cargo build --release`, e.g. for a Rust version whose LLVM has
# no llvm-profdata package in Debian yet.
ARG PGO=1
WORKDIR /src
# The training's tools (builder only): llvm-profdata of rustc's own LLVM version, the fake fal
# (nginx and its echo module), the load generator and the data generator.
RUN if [ "$PGO" = 1 ]; then \
        llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p') \
        && apt-get update \
        && apt-get install -y --no-install-recommends "llvm-$llvm" nginx-light \
            libnginx-mod-http-echo wrk python3 curl \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# Dependencies first, in a layer of their own, so source edits do not refetch them. Cargo
# cannot read a manifest without a target, nor one whose declared [[bench]] file is missing, so
# stub sources stand in for the real ones (src/, and benches/micro.rs, which is never built
# here: only `--bin fal-proxy` is). With PGO=0 the dependencies are built here too.
# (A [[bench]], [[test]] or [[example]] added to Cargo.toml needs its file here and below.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/micro.rs \
    && cargo fetch --locked \
    && if [ "$PGO" = 0 ]; then cargo build --release --locked --offline --bin fal-proxy; fi \
    && rm -rf src benches
COPY config ./config
COPY src ./src
COPY benches ./benches
COPY scripts/pgo-build.sh ./scripts/
COPY bench/fake-fal ./bench/fake-fal
COPY bench/lib ./bench/lib
COPY bench/fal-proxy.toml ./bench/
# (PGO=0: drop the stub's own artifacts first: cargo compares mtimes, and COPY keeps the
# sources' older ones. The profile-guided build has target folders of its own.)
RUN if [ "$PGO" = 1 ]; then \
        CARGO_NET_OFFLINE=true scripts/pgo-build.sh \
        && cp target/pgo/use/release/fal-proxy /fal-proxy; \
    else \
        cargo clean --release --offline --package fal-proxy \
        && cargo build --release --locked --offline --bin fal-proxy \
        && cp target/release/fal-proxy /fal-proxy; \
    fi \
    && strip /fal-proxy

FROM docker.io/library/debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fal-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fal-proxy \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/fal-proxy
COPY --from=build /fal-proxy /usr/local/bin/fal-proxy
# The commented defaults and shipped schemas, for reference and as a base to mount over: taken
# from the build stage, so they are the very files the binary embedded.
COPY --from=build /src/config/default.toml /etc/fal-proxy/fal-proxy.toml
COPY --from=build /src/config/schemas /etc/fal-proxy/schemas
USER 10001:10001
# The working folder, owned by the proxy's user: the default store (store.data_dir = "data", a
# relative path) lands in /var/lib/fal-proxy/data. Mount a volume here to keep it across restarts.
WORKDIR /var/lib/fal-proxy
ENV FAL_PROXY_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 \
    CMD ["/usr/local/bin/fal-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fal-proxy"]
CMD ["serve", "--config", "/etc/fal-proxy/fal-proxy.toml"]
