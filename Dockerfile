# Multi-stage build: a full Rust toolchain to compile, a slim runtime image
# with only the binary, running as an unprivileged user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY admin-ui ./admin-ui
COPY templates ./templates
RUN cargo build --release --locked --bin basalt

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data basalt \
    && mkdir -p /data && chown basalt /data
COPY --from=build /src/target/release/basalt /usr/local/bin/basalt
USER basalt
VOLUME ["/data"]
EXPOSE 8090
ENV BASALT_HTTP=0.0.0.0:8090 BASALT_DIR=/data
# Exec form: the server gets SIGTERM directly and shuts down gracefully.
ENTRYPOINT ["basalt"]
CMD ["serve"]
