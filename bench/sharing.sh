#!/usr/bin/env bash
# The figures of README's "Sharing results": the default study from
# scratch, a parameter changed and changed back, a push to a directory
# remote, and a fresh clone that pulls everything. Each step is timed whole
# (single runs). About 17 minutes on a 2-core machine.
#
#   bash bench/sharing.sh [WORKDIR]       (default: a new temporary directory)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cargo build --release --manifest-path "$repo/Cargo.toml" >&2
bin="$work/fmnist-pipe"
cp "$repo/target/release/fmnist-pipe" "$bin"
mkdir -p "$work/remote"
with_remote() {
    sed -i "s#^  jobs: 2#  jobs: 2\n  remotes:\n    origin: $work/remote#" pipeline.yaml
}
timed() {
    local s e
    s=$(date +%s.%N)
    "$@" > "$work/last.log" 2>&1
    e=$(date +%s.%N)
    printf '%8.3f s  %s  (%s)\n' "$(echo "$e - $s" | bc)" "$*" "$(grep -E '^[0-9]+ (ran|pushed)' "$work/last.log" | tail -1)"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
git clone -q "$repo" "$work/a" && cd "$work/a" && with_remote
timed "$bin" run
sed -i 's#no-dropout: {dropout: 0}#no-dropout: {dropout: 0.1}#' pipeline.yaml
timed "$bin" run
sed -i 's#no-dropout: {dropout: 0.1}#no-dropout: {dropout: 0}#' pipeline.yaml
timed "$bin" run
timed "$bin" push
git clone -q "$repo" "$work/b" && cd "$work/b" && with_remote
timed "$bin" run --pull
timed "$bin" run
if diff <(cd "$work/a" && find outputs -type f -exec sha256sum {} + | sort -k2) \
        <(cd "$work/b" && find outputs -type f -exec sha256sum {} + | sort -k2) >/dev/null; then
    echo "every file under outputs/ is byte-identical in the clone"
else
    echo "the clone's outputs DIFFER" && exit 1
fi
