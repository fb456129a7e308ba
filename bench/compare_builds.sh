#!/usr/bin/env bash
# Two builds of fmnist-pipe on the orchestrator's workload, alternated:
# 1,000 trivial `cmd` stages in chains of 10 (the shape of
# benches/orchestrator.rs), each round timing the first run (-j 1), then the
# medians of 7 no-op `status` and of 7 no-op `run`.
#
#   bench/compare_builds.sh OLD_BINARY NEW_BINARY [ROUNDS] [STAGES]
set -euo pipefail
old=$1 new=$2 rounds=${3:-3} n=${4:-1000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
mkdir -p data out
echo x > data/in.txt
{
    printf 'settings:\n  jobs: 1\nstages:\n'
    for ((i = 0; i < n; i++)); do
        printf '  s%d:\n    kind: cmd\n    cmd: "echo %d > out/s%d.txt"\n    deps: [data/in.txt]\n    outs: [out/s%d.txt]\n' "$i" "$i" "$i" "$i"
        if ((i % 10)); then printf '    needs: [s%d]\n' $((i - 1)); fi
    done
} > pipeline.yaml
secs() { { /usr/bin/time -f %e "$@" > /dev/null; } 2>&1 | tail -1; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for ((r = 1; r <= rounds; r++)); do
    for which in old new; do
        bin=${!which}
        rm -rf cache out && mkdir out
        first=$(secs "$bin" run -j 1)
        status=$(for _ in 1 2 3 4 5 6 7; do secs "$bin" status; done | median)
        noop=$(for _ in 1 2 3 4 5 6 7; do secs "$bin" run; done | median)
        echo "round $r $which first_run_s=$first noop_status_s=$status noop_run_s=$noop"
    done
done
