#!/usr/bin/env bash
# Reports of every simulator scenario for seeds 1, 2 and 3, for comparing two builds (how issue 11's
# "behaviour unchanged" was checked: docs/decisions.md §17).
#
# Usage: crates/sim/scripts/compare-reports.sh SIM_BINARY NODES OUTDIR
#   then: diff -r OUTDIR_OF_BUILD_A OUTDIR_OF_BUILD_B
# SIM_BINARY is a release build of the simulator (`cargo build --release -p sim`, target/release/sim).
# One file per run, <scenario>-<strategy>-<seed>.json: the report's JSON line, keys sorted, without
# wall_s and peak_rss_mb (the only fields that depend on the machine).
set -euo pipefail
bin=$1 nodes=$2 out=$3
mkdir -p "$out"
for seed in 1 2 3; do
    for run in broadcast:plumtree broadcast:flood lookup:plumtree churn:plumtree partition:plumtree; do
        scenario=${run%%:*} strategy=${run##*:}
        "$bin" --scenario "$scenario" --strategy "$strategy" --nodes "$nodes" --seed "$seed" --json 2>/dev/null \
            | tail -n 1 \
            | python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
d.pop("wall_s", None)
d.pop("peak_rss_mb", None)
print(json.dumps(d, sort_keys=True))' > "$out/$scenario-$strategy-$seed.json"
        echo "$scenario $strategy seed $seed" >&2
    done
done
