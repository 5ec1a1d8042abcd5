# Multi-stage build: compile on the Rust Debian image, run on Debian slim.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin kafka-mysql-sink

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home sink
COPY --from=build /src/target/release/kafka-mysql-sink /usr/local/bin/kafka-mysql-sink
COPY config/sink.toml /etc/kafka-mysql-sink/sink.toml
USER sink
ENTRYPOINT ["kafka-mysql-sink"]
CMD ["run", "--config", "/etc/kafka-mysql-sink/sink.toml"]
