#!/usr/bin/env bash
# Instructions the sink executes per message, counted by valgrind's callgrind.
#
# CPU seconds on a shared machine move by ±20 % between runs of the same
# binary; instruction counts do not (they depend on the binary and the input,
# not on what else the machine is doing), so this is the figure to compare
# builds by. Runs `bench_e2e` for one round over BENCH_ORDERS (default
# 100,000) orders with the sink under callgrind, then prints the totals per
# message for the whole process and for each of its parts.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 1
fi
n="${BENCH_ORDERS:-100000}"
out="target/callgrind.sink.out"
rm -f "$out"
log="target/callgrind.bench.log"
# No ceiling sweep; both delivery modes run under callgrind, and the output
# kept is the last one's (exactly-once, the default).
if ! BENCH_ORDERS="$n" BENCH_ROUNDS=1 BENCH_SWEEP=0 \
    BENCH_SINK_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$out" \
    ./target/release/examples/bench_e2e >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
# Inclusive costs of each thread's main function (the first line naming it;
# callgrind_annotate lists some functions under two spellings of their file).
callgrind_annotate --inclusive=yes --tree=none "$out" 2>/dev/null | awk -v n="$n" '
    function take(k, x) {
        if (k in v) return
        gsub(",", "", x)
        v[k] = x / n
    }
    /PROGRAM TOTALS/ { take(1, $1) }
    /source\/mod\.rs:kafka_mysql_sink::source::Source::run( \[|$)/ { take(2, $1) }
    /flat\.rs:kafka_mysql_sink::decode::flat::parse( \[|$)/ { take(3, $1) }
    /decode\.rs:kafka_mysql_sink::decode::Row::from_parts( \[|$)/ { take(4, $1) }
    /write\/mod\.rs:kafka_mysql_sink::write::Writer<S>::run( \[|$)/ { take(5, $1) }
    /rdkafka_broker\.c:rd_kafka_broker_thread_main( \[|$)/ { take(6, $1) }
    END {
        split("whole sink process|  consumer thread|    of which decoding|    of which making rows|  writer threads|  librdkafka broker", label, "|")
        for (k = 1; k <= 6; k++) if (k in v) printf "%-26s %6.0f\n", label[k], v[k]
    }
' | sed '1s/$/ instructions per message/'
echo "(callgrind output: $out; callgrind_annotate $out for the functions)"
