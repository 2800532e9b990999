# The `sextant` binary in a small image, for `sextant serve --store aws` replicas
# (docs/self-host.md). Built from the workspace as CI tests it:
#   docker build -t sextant .
# The build stage compiles the release binary; the final stage holds only it, CA
# certificates for TLS to AWS or other endpoints, and a non-root user.

FROM rust:1.95-bookworm AS build
# aws-lc-rs (the AWS SDK's TLS) builds its C with these.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sextant-cli --bin sextant \
 && cp target/release/sextant /usr/local/bin/sextant

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/sextant sextant
COPY --from=build /usr/local/bin/sextant /usr/local/bin/sextant
USER sextant
WORKDIR /var/lib/sextant
# The data directory holds only the mail outbox when the store is `aws`.
ENV SEXTANT_ADDR=0.0.0.0:8080 \
    SEXTANT_DATA_DIR=/var/lib/sextant
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
  CMD ["sextant", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["sextant"]
CMD ["serve", "--store", "aws"]
