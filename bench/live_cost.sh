#!/bin/bash
# What the live page costs a study: the default study from scratch,
# alternated: A without the live page (`run --no-live`), C with it and
# `serve` followed by 20 pages (20 event streams, each fetching the page
# again at every change, as a served page does). Prints a TSV line per
# run: its wall time, the sum of its trainings' epoch times, and whether
# its predictions are the first run's, byte for byte.
#   bash bench/live_cost.sh [FMNIST_PIPE_BINARY] [WORK_DIR] [CONDITIONS...]
set -u
FP=${1:-$PWD/target/release/fmnist-pipe}
WORK=${2:-/tmp/fmnist-pipe-live-cost}
shift 2 2>/dev/null
CONDS=${*:-A C A C}
PIPELINE=$(cd "$(dirname "$0")/.." && pwd)/pipeline.yaml
echo -e "run\tcond\twall_s\ttrain_epoch_s_sum\tpredictions_as_run_1"
n=0
for cond in $CONDS; do
  n=$((n + 1))
  d=$WORK/$n-$cond
  rm -rf "$d"; mkdir -p "$d"; cp "$PIPELINE" "$d/"
  cd "$d" || exit 1
  pids=()
  port=$((18000 + n))
  if [ "$cond" = C ]; then
    "$FP" serve --port $port > serve.out 2>&1 & pids+=($!)
    ( while [ -z "$(ls cache/live 2>/dev/null)" ]; do sleep 0.2; done
      name=$(ls cache/live | head -1)
      for k in $(seq 1 20); do
        ( curl -sN "http://127.0.0.1:$port/runs/$name/events" | while read -r line; do
            case "$line" in event:*) curl -s "http://127.0.0.1:$port/runs/$name/page" > /dev/null; echo "$k" >> fetches.txt ;; esac
          done ) &
      done
      wait ) & pids+=($!)
  fi
  flag=""; [ "$cond" = A ] && flag="--no-live"
  /usr/bin/time -f "%e" -o time.txt "$FP" run $flag > run.out 2> run.err
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  pkill -f "curl -sN http://127.0.0.1:$port/" 2>/dev/null
  epochs=$(python3 -c "
import json, glob
print(round(sum(e['seconds'] for f in glob.glob('outputs/train*/history.json') for e in json.load(open(f))), 1))")
  same=yes
  for f in "$WORK"/1-*/outputs/evaluate@*/predictions.csv; do
    v=$(basename "$(dirname "$f")")
    cmp -s "$f" "outputs/$v/predictions.csv" || same=no
  done
  echo -e "$n\t$cond\t$(cat time.txt)\t$epochs\t$same"
done
