# kafka-mysql-sink: multi-stage build, release binary on Debian slim.
# Build:  docker build -t kafka-mysql-sink .
# Run:    docker run --rm -e KAFKA_BROKERS=kafka:9092 -e MYSQL_HOST=mysql kafka-mysql-sink

FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka and jemalloc are built from source by their crates (make and a
# C compiler, both in the Rust image).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin kafka-mysql-sink \
    && strip target/release/kafka-mysql-sink

FROM debian:bookworm-slim
# CA certificates for TLS to Kafka (SASL_SSL) and MySQL; nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sink
COPY --from=build /src/target/release/kafka-mysql-sink /usr/local/bin/kafka-mysql-sink
COPY config/sink.toml /etc/kafka-mysql-sink/sink.toml
USER 10001
# Metrics and health endpoints on; the health check needs nothing but bash.
ENV METRICS_ADDR=0.0.0.0:9187
EXPOSE 9187
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["kafka-mysql-sink"]
CMD ["run", "--config", "/etc/kafka-mysql-sink/sink.toml"]
