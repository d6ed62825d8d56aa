"""security.applied.seccomp says what is enforced: runsc applies the profile only with --oci-seccomp."""

from __future__ import annotations

from typing import Any

from aido.backends.docker.hostconfig import applied_settings, seccomp_applied


def inspect(runtime: str, security_opt: list[str] | None = None) -> dict[str, Any]:
    return {"HostConfig": {"Runtime": runtime, "SecurityOpt": security_opt or ["no-new-privileges:true"]}}


def test_runc_applies_the_default_profile() -> None:
    assert applied_settings(inspect("runc"))["seccomp"] == "default"
    assert applied_settings(inspect("runc", ["seccomp=unconfined"]))["seccomp"] == "unconfined"


def test_runsc_without_oci_seccomp_does_not_claim_the_profile() -> None:
    applied = applied_settings(inspect("runsc"), ["--network=none"])
    assert applied["seccomp"] == "not enforced (runsc without --oci-seccomp)"
    assert applied["runtime"] == "runsc"


def test_runsc_with_oci_seccomp_enforces_it() -> None:
    assert applied_settings(inspect("runsc"), ["--network=none", "--oci-seccomp"])["seccomp"] == "default"


def test_runsc_whose_registration_cannot_be_read_claims_nothing() -> None:
    assert seccomp_applied([], "runsc", None).startswith("unknown (")
    assert applied_settings(inspect("runsc"))["seccomp"].startswith("unknown (")
