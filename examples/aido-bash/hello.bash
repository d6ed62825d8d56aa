#!/usr/bin/env bash
# A task only bash runs: arrays and [[ ]] are not sh.
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(world)
for name in "${names[@]}"; do
  echo "hello, ${name} (bash ${BASH_VERSINFO[0]})"
done
