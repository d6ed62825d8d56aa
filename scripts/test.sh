#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs and starts what it
# needs (Docker engine with gVisor, local base images, a virtualenv with aido), then
# lints, type-checks and runs every test against the real engine, and runs the
# hostile-task suite (tests/security) a second time under gVisor.
# Extra args go to the first pytest run (e.g. `scripts/test.sh -x -k lifecycle`).
export AIDO_EXTRAS="dev,ray,mcp"
source "$(dirname "$0")/_env.sh"

echo "[test] ruff" >&2
ruff check src tests benchmarks
ruff format --check src tests benchmarks
echo "[test] mypy (strict)" >&2
mypy
echo "[test] import-linter (the architecture's layers, pyproject.toml)" >&2
lint-imports --no-cache
# The tests' temporary directories (every test project, its sandboxes' work/ and outputs/) go to
# a RAM-backed tmpfs when there is one with room: creating an inode on this VM's ext4 took
# ~175 us against ~10 us on tmpfs, and the hostile-tree tests create 312,000 files a pass
# (test_a_huge_number_of_entries: 100 s -> 16 s under runc, 132 s -> 71 s under gVisor). The
# suite peaked at ~200 MB there. AIDO_TEST_TMP=<dir> picks another place; empty: pytest's default.
if [ -z "${AIDO_TEST_TMP+set}" ]; then
  AIDO_TEST_TMP=""
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] \
    && [ "$(df --output=avail -k /dev/shm | tail -n 1)" -gt $((4 * 1024 * 1024)) ]; then
    AIDO_TEST_TMP=/dev/shm
  fi
fi
basetemp=()
if [ -n "$AIDO_TEST_TMP" ]; then
  tmp_dir="$(mktemp -d "$AIDO_TEST_TMP/aido-tests.XXXXXX")"
  trap 'rm -rf "$tmp_dir"' EXIT
  basetemp=(--basetemp "$tmp_dir/runc")
  echo "[test] temporary directories under $tmp_dir" >&2
fi

echo "[test] pytest (default isolation: runc)" >&2
pytest "${basetemp[@]}" "$@"
if [ "${AIDO_SKIP_GVISOR:-0}" != 1 ]; then
  echo "[test] pytest tests/security under gVisor (AIDO_TEST_ISOLATION=gvisor)" >&2
  if [ -n "$AIDO_TEST_TMP" ]; then basetemp=(--basetemp "$tmp_dir/gvisor"); fi
  AIDO_TEST_ISOLATION=gvisor pytest "${basetemp[@]}" tests/security
fi
