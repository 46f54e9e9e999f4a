#!/usr/bin/env bash
# Profile a Silver Lining node with py-spy while the benchmark drives it.
#
#   bash benchmarks/profile.sh [extra run.py arguments, e.g. --sl-args "--no-access-log"]
#
# run.py starts the node as usual and, during the 64 MiB PUT/GET and 4 KiB PUT/GET phases,
# attaches py-spy (--subprocesses --gil, 100 Hz) to it. Written under
# benchmarks/.work/profile/:
#   silverlining-<phase>.svg   flame graph
#   silverlining-<phase>.txt   raw collapsed stacks of the GIL holder
#   top.txt                    self/inclusive time by function and by file, per phase
#   RESULTS.md, results.json   that run's figures (sampling slows the node: not for comparison)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
client="$here/.peers/client/bin/python"
out="$here/.work/profile"
[ -x "$here/.peers/client/bin/py-spy" ] || bash "$here/setup_peers.sh"
mkdir -p "$out"
rm -f "$out"/silverlining-*

cd "$here"
"$client" run.py --only silverlining --duration 15 --list-keys 1000 \
  --profile "$out" --output "$out/RESULTS.md" --json "$out/results.json" "$@"

"$client" -m harness.pyspy_report --limit 25 "$out"/silverlining-*.txt >"$out/top.txt"
echo "flame graphs: $out/silverlining-*.svg"
echo "top listing:  $out/top.txt"
