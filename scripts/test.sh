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
echo "[test] pytest (default isolation: runc)" >&2
pytest "$@"
if [ "${AIDO_SKIP_GVISOR:-0}" != 1 ]; then
  echo "[test] pytest tests/security under gVisor (AIDO_TEST_ISOLATION=gvisor)" >&2
  AIDO_TEST_ISOLATION=gvisor pytest tests/security
fi
