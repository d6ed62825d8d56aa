#!/usr/bin/env bash
# aido's main job end to end: create a sandbox, run an example task in it, show its evidence.
source "$(dirname "$0")/_env.sh"

demo="$(mktemp -d /tmp/aido-demo.XXXXXX)"
cp "$ROOT/examples/hello.py" "$ROOT/examples/sandbox.yaml" "$demo/"
mkdir -p "$demo/data" && printf 'alpha\nbeta\ngamma\n' >"$demo/data/words.txt"
cd "$demo"
set -x
aido sandbox up
aido run hello.py -- --greeting "hello from the sandbox"
aido logs
aido show
aido sandbox list
set +x
run_dir="$(ls -d .aido/sandboxes/*/runs/run-001)"
echo
echo "== evidence in $demo/$run_dir =="
ls -l "$run_dir"
echo "== summary.json (excerpt) =="
python3 - "$run_dir/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
keys = ["sandbox_id", "run_id", "task", "status", "exit_code", "duration_ms", "image", "changes"]
print(json.dumps({k: s[k] for k in keys}, indent=2))
print("security applied:", json.dumps({k: s["security"]["applied"][k] for k in
      ("user", "network_mode", "cap_drop", "readonly_rootfs", "memory_bytes", "pids_limit")}))
PY
echo "== events.log =="
cat .aido/sandboxes/*/events.log
echo
echo "Demo workspace left in $demo (remove with: cd $demo && aido sandbox destroy --all)"
