#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs and starts what it
# needs (Docker engine, local base images, a virtualenv with aido), then lints,
# type-checks and runs every test against the real engine. Extra args go to pytest.
source "$(dirname "$0")/_env.sh"

echo "[test] ruff" >&2
ruff check src tests benchmarks
ruff format --check src tests benchmarks
echo "[test] mypy (strict)" >&2
mypy
echo "[test] pytest" >&2
exec pytest "$@"
