#!/usr/bin/env bash
# Shared by the paper-table launchers (launch/<paper>.sh): `row` trains one
# config and prints the paper's number beside the measured one.
#
#   source "$(dirname "$0")/common.sh"
#   row <label> <paper %> <config file> [--config.x=y ...]
#
# Runs land in $RUNS (default runs/<paper script name>); a finished run is
# resumed, not retrained, so the whole table can be rerun after a preemption.
# Results are appended to $RUNS/table.tsv (label, paper, measured, workdir).
set -euo pipefail
RUNS=${RUNS:-runs/$(basename "${0%.sh}")}
PYTHON=${PYTHON:-python}
mkdir -p "$RUNS"

row() {
  local label=$1 paper=$2 config=$3
  shift 3
  local workdir="$RUNS/$label"
  "$PYTHON" -m jaxquant.main --config "$config" --workdir "$workdir" "$@" >"$workdir.log" 2>&1 || {
    echo "$label: FAILED (see $workdir.log)"; return 0; }
  local measured
  measured=$("$PYTHON" -c 'import json,sys; print("%.2f" % (100 * json.load(open(sys.argv[1]))["test_accuracy"]))' \
             "$workdir/result.json")
  printf '%-40s paper %6s   measured %6s\n' "$label" "$paper" "$measured"
  printf '%s\t%s\t%s\t%s\n' "$label" "$paper" "$measured" "$workdir" >>"$RUNS/table.tsv"
}
