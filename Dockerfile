# wabridge container image: a build stage with the Rust toolchain, a runtime stage with the binary alone.
#   docker build -t wabridge .
#   docker run -d --name wabridge -p 8080:8080 -v wabridge-data:/var/lib/wabridge wabridge
#   docker logs wabridge            # the admin API token, printed once on the first start
# Deployment (compose with PostgreSQL, systemd, reverse proxy): docs/deployment.md.

# The base images; override them with --build-arg to use a mirror or a local copy.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace (the product's manifest names crates/sandbox and crates/bench as members); .dockerignore
# keeps target/, data/ and .git out of the context.
COPY . .
# Plain RUN (no BuildKit cache mounts), so that the classic builder builds it too. The release profile keeps
# line tables for profiling (debug = 1); the image drops them (148 MB -> 27 MB), keeping the symbols for backtraces.
RUN cargo build --release --locked -p wabridge --bin wabridge \
    && install -D -m 0755 target/release/wabridge /out/wabridge \
    && strip --strip-debug /out/wabridge \
    && install -d -m 0700 /out/var/lib/wabridge

# distroless "cc": glibc and libgcc, no shell, no package manager; runs as uid 65532 ("nonroot").
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/wabridge /usr/local/bin/wabridge
COPY --from=build --chown=65532:65532 /out/var/lib/wabridge /var/lib/wabridge
WORKDIR /var/lib/wabridge
# The SQLite file, the generated master key and media live in the volume; every CLI command run in the container
# (`docker exec wabridge wabridge app list`) finds the same database through these variables.
ENV WABRIDGE_DATA_DIR=/var/lib/wabridge \
    WABRIDGE_DATABASE_URL=sqlite:///var/lib/wabridge/wabridge.db \
    WABRIDGE_LISTEN=0.0.0.0:8080
VOLUME ["/var/lib/wabridge"]
USER 65532:65532
# 8080: HTTP (put a TLS-terminating reverse proxy in front: Meta requires HTTPS). 5061: the SIP edge (TLS) and
# 5070/udp toward Asterisk, when sip_enabled.
EXPOSE 8080 5061 5070/udp
# `wabridge healthcheck` asks GET /healthz on the listen address (the image has no curl or shell).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/wabridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wabridge"]
CMD ["serve"]
