"""aido doctor: skipped checks are counted as skipped, and runsc without --oci-seccomp is a warning."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aido.doctor import FAIL, OK, SKIP, WARN, counts, exit_code, run_checks, summary_line
from tests.helpers.cli import Result
from tests.helpers.doctor import GOOD_FACTS, DoctorBackend, by_name

Aido = Callable[..., Result]
UNREACHABLE = {"DOCKER_HOST": "unix:///nonexistent.sock"}


def test_unreachable_engine_counts_skipped_checks_as_skipped_in_json(aido: Aido) -> None:
    result = aido("doctor", "--json", env=UNREACHABLE)
    assert result.code == 1
    payload = result.json
    statuses = [c["status"] for c in payload["checks"]]
    assert statuses == ["fail", *["skipped"] * 7, "ok", "ok", "ok"]  # workspace, python, signing key
    assert payload["counts"] == {"ok": 3, "warn": 0, "fail": 1, "skipped": 7}


def test_unreachable_engine_counts_skipped_checks_as_skipped_for_humans(aido: Aido) -> None:
    result = aido("doctor", env=UNREACHABLE)
    assert result.code == 1
    assert "1 check(s) failed; 3 passed, 7 skipped" in result.stderr
    assert "- " in result.stdout  # the skipped rows' mark
    # One fix for the engine; the skipped rows do not repeat "fix the engine first" seven times.
    assert "fix the engine first" not in result.stderr + result.stdout


@pytest.mark.docker
def test_counts_add_up_against_the_real_engine(engine: None, aido: Aido) -> None:
    result = aido("doctor", "--json", "--no-smoke")
    payload = result.json
    found = payload["counts"]
    assert sum(found.values()) == len(payload["checks"])
    for status, count in found.items():
        assert count == sum(c["status"] == status for c in payload["checks"])
    assert found["skipped"] == 0  # nothing was skipped: the engine answered


def test_summary_line() -> None:
    from aido.doctor import Check

    ok = Check("a", OK, "", None)
    assert summary_line([ok, ok]) == "ready (2 passed)"
    assert summary_line([ok, Check("b", WARN, "", "x")]) == "ready (1 passed, 1 warning(s))"
    checks = [Check("e", FAIL, "", "x"), Check("c", SKIP, "", "y"), ok]
    assert summary_line(checks) == "1 check(s) failed; 1 passed, 1 skipped"
    assert counts(checks) == {"ok": 1, "warn": 0, "fail": 1, "skipped": 1}
    assert exit_code([ok, Check("c", SKIP, "", "y")]) == 0  # a skipped check alone fails nothing


def _runsc_args() -> list[str] | None:
    found = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True, check=True
    )
    spec = json.loads(found.stdout).get("runsc")
    return None if spec is None else list(spec.get("runtimeArgs") or [])


@pytest.mark.docker
def test_the_runsc_check_matches_its_registration(engine: None, tmp_path: Path) -> None:
    args = _runsc_args()
    if args is None:
        pytest.fail("runsc is not registered with this engine (scripts/bootstrap.sh registers it)")
    check = by_name(run_checks(start=tmp_path, images=(), smoke=False))["oci_runtime:runsc"]
    if "--oci-seccomp" in args:
        assert check.status == OK, check
    else:
        assert check.status == WARN, check
        assert "without --oci-seccomp" in check.detail


@pytest.mark.parametrize("smoke", [True, False])
def test_runsc_without_oci_seccomp_is_a_warning(tmp_path: Path, smoke: bool) -> None:
    facts: dict[str, Any] = {**GOOD_FACTS, "oci_runtime_args": {"runc": [], "runsc": ["--network=none"]}}
    checks = run_checks(DoctorBackend(facts=facts), start=tmp_path, images=(), smoke=smoke)
    check = by_name(checks)["oci_runtime:runsc"]
    assert check.status == WARN
    assert "registered without --oci-seccomp: the seccomp profile is not applied" in check.detail
    assert check.fix is not None
    assert '"--oci-seccomp"' in check.fix
    assert "kill -HUP" in check.fix
    assert by_name(checks)["oci_runtime:runc"].status == OK
    assert exit_code(checks) == 0

    facts["oci_runtime_args"]["runsc"].append("--oci-seccomp")
    checks = run_checks(DoctorBackend(facts=facts), start=tmp_path, images=(), smoke=smoke)
    assert by_name(checks)["oci_runtime:runsc"].status == OK
