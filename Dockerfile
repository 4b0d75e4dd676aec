# fal-proxy container image: a multi-stage build whose runtime stage holds only the binary,
# CA certificates and the commented default config. No compiler, no sources, no secrets.
#
#   docker build -t fal-proxy .
#   docker run --rm -p 8080:8080 fal-proxy --mock                      # embedded fake of fal
#   docker run --rm -p 8080:8080 -e FAL_KEY=... fal-proxy               # real fal
#   docker run --rm -p 8080:8080 -v $PWD/my.toml:/etc/fal-proxy/fal-proxy.toml:ro \
#       -v /run/secrets/fal_key:/run/secrets/fal_key:ro fal-proxy serve --config /etc/fal-proxy/fal-proxy.toml

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not refetch them.
COPY Cargo.toml Cargo.lock ./
RUN cargo fetch --locked
COPY config ./config
COPY src ./src
RUN cargo build --release --locked --bin fal-proxy \
    && cp target/release/fal-proxy /fal-proxy \
    && strip /fal-proxy

FROM docker.io/library/debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fal-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fal-proxy
COPY --from=build /fal-proxy /usr/local/bin/fal-proxy
# The commented defaults and shipped schemas, for reference and as a base to mount over.
COPY config/default.toml /etc/fal-proxy/fal-proxy.toml
COPY config/schemas /etc/fal-proxy/schemas
USER 10001:10001
ENV FAL_PROXY_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 \
    CMD ["/usr/local/bin/fal-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fal-proxy"]
CMD ["serve", "--config", "/etc/fal-proxy/fal-proxy.toml"]
