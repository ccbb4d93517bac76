# syntax=docker/dockerfile:1
# Tollgate container image: built with the workspace's locked dependencies, run as a non-root user
# on a distroless base (glibc, CA certificates, no shell).
#
#   docker build -t tollgate .
#   docker run --rm --env-file .env -p 127.0.0.1:8080:8080 -p 127.0.0.1:9180:9180 tollgate
#
# The default config, /etc/tollgate/container.toml (config/container.toml), listens on every interface
# inside the container and needs no other service; its credentials come from the environment
# (.env.example lists them). Another config: `run --config /etc/tollgate/<file>` or TOLLGATE_CONFIG.
# docker-compose.yml builds and runs this image next to Redis, Prometheus, Alertmanager and Grafana.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds; the binary is copied
# out of the cached target directory, which does not survive into the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tollgate \
    && install -m 0755 target/release/tollgate /usr/local/bin/tollgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/tollgate /usr/local/bin/tollgate
COPY config/*.toml /etc/tollgate/
USER nonroot:nonroot
# Read by `run` and `check` (the config) and by `health` and `webhooks` (the admin listener to ask).
ENV TOLLGATE_CONFIG=/etc/tollgate/container.toml \
    TOLLGATE_ADMIN=127.0.0.1:9180
# 8080: data plane (callers); 9180: admin (/metrics /healthz /readyz /status).
EXPOSE 8080 9180
# `tollgate health` asks /readyz on TOLLGATE_ADMIN: exit 0 when ready (no shell needed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tollgate", "health"]
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["run"]
