#!/usr/bin/env bash
# `ringkernel top --once` against a running showcase's Prometheus endpoint.
# usage: top_against_showcase.sh <showcase binary> <ringkernel binary>
set -u
showcase=$1
tool=$2
log=$(mktemp)
"$showcase" --transactions 100000 --rate 50000 --quiet --linger 2 --backend cpu >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
port=
for _ in $(seq 1 100); do
  port=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1 | cut -d: -f2)
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "the showcase printed no metrics port:"; cat "$log"; exit 1
fi
sleep 0.5
if ! out=$("$tool" top --once --port "$port"); then
  echo "ringkernel top failed"; exit 1
fi
echo "$out"
for want in ingest rules/0 rules/1 alerter end_to_end PROCESSED; do
  if ! grep -q "$want" <<<"$out"; then
    echo "ringkernel top shows no '$want'"; exit 1
  fi
done
if ! wait $pid; then
  echo "the showcase failed:"; cat "$log"; exit 1
fi
tail -1 "$log"
