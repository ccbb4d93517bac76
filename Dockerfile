# syntax=docker/dockerfile:1
# Tollgate container image: built with the workspace's locked dependencies, run as a non-root user
# on a distroless base (glibc, CA certificates, no shell).
#
#   docker build -t tollgate .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:9090:9090 --env-file .env tollgate \
#       run --config /etc/tollgate/compose.toml
#
# docker-compose.yml builds and runs this image next to Prometheus and Grafana.

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
# 8080: data plane (callers); 9090: admin (/metrics /healthz /readyz /status).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["run", "--config", "/etc/tollgate/tollgate.toml"]
