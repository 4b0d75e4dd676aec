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
WORKDIR /src
# Dependencies first, in layers of their own, so source edits neither refetch nor rebuild them.
# Cargo cannot read a manifest without a target, nor one whose declared [[bench]] file is
# missing, so stub sources stand in for the real ones (src/, and benches/micro.rs, which is never
# built here: only `--bin fal-proxy` is).
# (A [[bench]], [[test]] or [[example]] added to Cargo.toml needs its file here and below.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/micro.rs \
    && cargo fetch --locked
RUN cargo build --release --locked --offline --bin fal-proxy \
    && rm -rf src benches
COPY config ./config
COPY src ./src
COPY benches ./benches
# Drop the stub's own artifacts: cargo compares mtimes, and COPY keeps the sources' older ones.
RUN cargo clean --release --offline --package fal-proxy \
    && cargo build --release --locked --offline --bin fal-proxy \
    && cp target/release/fal-proxy /fal-proxy \
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
