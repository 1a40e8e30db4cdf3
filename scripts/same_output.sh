#!/bin/bash
# Does a change to the decoder or the views print exactly what was printed before? For speed work, where the answer
# must be "byte for byte, yes".
#
#   scripts/same_output.sh TREE OUT [CAPTURE ...]
#
# Runs `wsinspect read` from the source tree TREE (a checkout, or a commit copied out with
# `git archive COMMIT | tar -x -C DIR`) over every capture shipped in TREE/captures, in every view, with colour on
# and off, with --explain, a -Y filter and --port, and at several widths; then over each extra CAPTURE (for example
# the big ones bench/views_bench.py --keep leaves in bench/out) in the list, --json, --compact, and the first
# packets of --follow and --detail. Each run's output goes to OUT/NAME.out, its stderr and exit status to
# OUT/NAME.err. Compare two trees with `diff -r OUT_A OUT_B`: nothing should differ.
set -u
if [ $# -lt 2 ]; then
  echo "usage: scripts/same_output.sh TREE OUT [CAPTURE ...]" >&2
  exit 2
fi
TREE=$(cd "$1" && pwd); OUT=$2; shift 2
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
CAPTURES=$(cd "$(dirname "$0")/../captures" && pwd)  # this checkout's captures, the same input for every tree
(cd "$TREE" && python -m compileall -q wsinspect >/dev/null)
export PYTHONPATH="$TREE" COLUMNS=100 LINES=50 TERM=xterm-256color

run() {  # NAME ARGS...: `python -m` puts the working directory first on sys.path, so it runs in TREE
  local name=$1; shift
  (cd "$TREE" && timeout 300 python -m wsinspect "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; echo "exit $?" >>"$OUT/$name.err")
}

for capture in "$CAPTURES"/*.pcapng "$CAPTURES"/tls/*.pcapng; do
  name=$(basename "$capture")
  keys=(); [ -f "$capture.keys" ] && keys=(--keylog "$capture.keys")
  for view in "" --detail --follow --json --flow --compact; do
    for colour in never always; do
      run "$name$view-$colour" read $view --color $colour "${keys[@]}" "$capture"
    done
  done
  run "$name-explain" read --explain --color always "$capture"
  run "$name-filter" read -Y 'websocket.opcode == 1 || violation' --color always "$capture"
done
for capture in "$CAPTURES"/midstream.pcapng "$CAPTURES"/midstream-deflate.pcapng; do
  name=$(basename "$capture")
  run "$name-port" read --port 47070 --color always "$capture"
  run "$name-port-detail" read --detail --port 47070 "$capture"
done
for width in 20 40 60 80 160; do
  COLUMNS=$width run "close-codes-w$width" read --color always "$CAPTURES/close-codes.pcapng"
  COLUMNS=$width run "deflate-w$width" read --color always "$CAPTURES/deflate.pcapng"
done
for capture in "$@"; do
  name=$(basename "$capture")
  run "$name-list" read --color always "$capture"
  run "$name-json" read --json "$capture"
  run "$name-compact" read --compact "$capture"
  run "$name-follow" read --follow -c 20000 "$capture"
  run "$name-detail" read --detail -c 3000 --color always "$capture"
done
echo "$(ls "$OUT" | wc -l) files in $OUT"
