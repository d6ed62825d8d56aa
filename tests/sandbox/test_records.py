"""sandbox.json records: round trip, versioning, validation (store/records.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aido.config.loader import load_spec
from aido.errors import MetadataError
from aido.exit_codes import ExitCode
from aido.store.records import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    RunRef,
    RunSettings,
    SandboxRecord,
    isoformat,
    parse_time,
)

SOURCE = ".aido/sandboxes/abcdefabcdef/sandbox.json"


def _record(**changes: Any) -> SandboxRecord:
    fields: dict[str, Any] = {
        "id": "abcdefabcdef",
        "name": "demo",
        "created_at": "2026-01-01T10:00:00Z",
        "expires_at": "2026-01-01T10:15:00Z",
        "config": load_spec(None).model_dump(mode="json"),
        "task_user": "10001:10001",
    }
    fields.update(changes)
    return SandboxRecord(**fields)


RUNS = [
    RunRef(
        run_id="run-001",
        task="hello.py",
        status="success",
        started_at="2026-01-01T10:01:00Z",
        completed_at="2026-01-01T10:01:01Z",
        duration_ms=1000,
        exit_code=0,
        evidence="runs/run-001",
        artifacts=["runs/run-001/stdout.log"],
    ),
    RunRef(run_id="run-002", task="t.sh", status="running", started_at="2026-01-01T10:02:00Z"),
]


def _json(record: SandboxRecord | None = None) -> dict[str, Any]:
    # Through real JSON text, as read from disk.
    return json.loads(json.dumps((record or _record()).to_json()))


def _v1() -> dict[str, Any]:
    """A schema-1 sandbox.json, which listed its runs (run fields are validated there)."""
    return _json() | {"schema_version": 1, "runs": [dict(vars(r)) for r in RUNS]}


def _load(data: Any) -> SandboxRecord:
    return SandboxRecord.from_json(data, source=SOURCE)


def test_round_trip() -> None:
    record = _record()
    assert _load(_json(record)) == record


def test_to_json_key_order_and_version() -> None:
    data = _record().to_json()
    assert list(data)[:6] == ["schema_version", "id", "name", "created_at", "expires_at", "status"]
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert set(data) == {
        "schema_version",
        "id",
        "name",
        "created_at",
        "expires_at",
        "status",
        "config",
        "task_user",
        "runtime_backend",
        "auto_cleanup",
    }


def test_run_lookup() -> None:
    record = _record(legacy_runs=RUNS)
    found = record.run("run-002")
    assert found is not None
    assert found.task == "t.sh"
    assert record.run("run-003") is None


def test_expired() -> None:
    record = _record()
    expires = parse_time(record.expires_at)
    assert not record.expired(expires - timedelta(seconds=1))
    assert record.expired(expires)
    assert record.expired(expires + timedelta(days=1))


def test_isoformat_is_utc_with_z() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert isoformat(moment) == "2026-01-01T12:00:00Z"
    assert parse_time("2026-01-01T12:00:00Z") == moment.replace(microsecond=0)


def test_newer_schema_version_is_refused() -> None:
    data = _json()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(MetadataError) as caught:
        _load(data)
    assert caught.value.message == (
        f"{SOURCE} was written by a newer aido (metadata version 3, this aido reads up to 2)"
    )
    assert caught.value.hint == "use a newer aido (`pip install -U .` in a newer checkout of aido)"
    assert caught.value.exit_code == ExitCode.SANDBOX_STATE


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1]])
def test_schema_version_must_be_an_int(version: object) -> None:
    data = _json()
    data["schema_version"] = version
    with pytest.raises(MetadataError, match=r"schema_version must be an integer"):
        _load(data)


def test_version_zero_is_migrated() -> None:
    # Pre-release files: no version, no expiry, no task user, no backend, no name.
    data = {
        "id": "abcdefabcdef",
        "created_at": "2026-01-01T10:00:00Z",
        "status": "created",
        "config": {"ttl": "2h", "name": "old"},
        "runs": [],
    }
    record = _load(data)
    assert record.schema_version == SCHEMA_VERSION
    assert record.expires_at == "2026-01-01T12:00:00Z"
    assert record.task_user == "10001:10001"
    assert record.runtime_backend == "docker"
    assert record.auto_cleanup is True
    assert record.name == "old"
    assert record.to_json()["schema_version"] == SCHEMA_VERSION
    assert record.legacy_runs == []  # the store's first write moves them into the run index
    with pytest.raises(RuntimeError, match="must move into the run index"):
        record.to_bytes()  # never saved with its runs dropped


def test_version_zero_default_ttl() -> None:
    record = _load(
        {
            "id": "abcdefabcdef",
            "created_at": "2026-01-01T10:00:00Z",
            "status": "created",
            "config": {},
            "runs": [],
        }
    )
    assert record.expires_at == "2026-01-01T10:15:00Z"


@pytest.mark.parametrize(
    "data",
    [
        {"id": "abcdefabcdef", "status": "created", "config": {}, "runs": []},  # no created_at
        {"id": "abcdefabcdef", "created_at": "yesterday", "status": "created", "config": {}, "runs": []},
        {
            "id": "abcdefabcdef",
            "created_at": "2026-01-01T10:00:00Z",
            "status": "created",
            "config": {"ttl": "forever"},
            "runs": [],
        },
        {
            "id": "abcdefabcdef",
            "created_at": "2026-01-01T10:00:00Z",
            "status": "created",
            "config": ["not", "a", "dict"],
            "runs": [],
        },
    ],
)
def test_broken_version_zero_file_is_a_metadata_error(data: dict[str, Any]) -> None:
    # A corrupt pre-release file must give the usual clear error, not a raw ValueError.
    with pytest.raises(MetadataError):
        _load(data)


@pytest.mark.parametrize("data", [[], "text", 1, None])
def test_not_an_object(data: object) -> None:
    with pytest.raises(MetadataError, match=rf"^{SOURCE}: expected a JSON object$"):
        _load(data)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("id", True, "id has the wrong type (bool)"),
        ("id", 123, "id has the wrong type (int)"),
        ("status", False, "status has the wrong type (bool)"),
        ("task_user", 10001, "task_user has the wrong type (int)"),
        ("name", 5, "name has the wrong type (int)"),
        ("config", "ttl: 15m", "config has the wrong type (str)"),
        ("auto_cleanup", "yes", "auto_cleanup has the wrong type (str)"),
        ("auto_cleanup", 1, "auto_cleanup has the wrong type (int)"),
        ("runtime_backend", None, "runtime_backend has the wrong type (NoneType)"),
        ("created_at", 0, "created_at has the wrong type (int)"),
    ],
)
def test_wrong_types_are_metadata_errors(key: str, value: object, reason: str) -> None:
    data = _v1()
    data[key] = value
    with pytest.raises(MetadataError) as caught:
        _load(data)
    assert caught.value.message == f"{SOURCE} is invalid: {reason}"
    assert caught.value.hint == "restore it or destroy the sandbox"


@pytest.mark.parametrize(("value", "kind"), [({"run-001": {}}, "dict"), (None, "NoneType")])
def test_a_schema_1_runs_list_of_the_wrong_type(value: object, kind: str) -> None:
    data = _v1()
    data["runs"] = value
    with pytest.raises(MetadataError) as caught:
        _load(data)
    assert caught.value.message == f"{SOURCE} is invalid: runs has the wrong type ({kind})"


def test_bad_timestamp() -> None:
    data = _json()
    data["expires_at"] = "next tuesday"
    with pytest.raises(MetadataError, match=r"is invalid: "):
        _load(data)


@pytest.mark.parametrize("key", ["id", "created_at", "expires_at", "config", "task_user", "runs", "status"])
def test_missing_key(key: str) -> None:
    data = _v1()  # a schema-1 file must have its runs list
    del data[key]
    with pytest.raises(MetadataError, match=rf"is invalid: '{key}'"):
        _load(data)


def test_unknown_run_status() -> None:
    data = _v1()
    data["runs"][0]["status"] = "exploded"
    with pytest.raises(MetadataError) as caught:
        _load(data)
    assert caught.value.message == (
        f"{SOURCE} is invalid: run status 'exploded' is not one of {', '.join(RUN_STATUSES)}"
    )


def test_unknown_run_field() -> None:
    data = _v1()
    data["runs"][0]["pwned"] = True
    with pytest.raises(MetadataError, match=r"unknown run field\(s\): pwned"):
        _load(data)


@pytest.mark.parametrize("run", ["run-001", 1, None, ["run-001"]])
def test_run_not_an_object(run: object) -> None:
    data = _v1()
    data["runs"] = [run]
    with pytest.raises(MetadataError, match=r"runs must be objects"):
        _load(data)


def test_run_missing_required_field() -> None:
    data = _v1()
    del data["runs"][0]["task"]
    with pytest.raises(MetadataError, match=r"is invalid: "):
        _load(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("run_id", True),
        ("run_id", 1),
        ("task", None),
        ("started_at", 7),
        ("exit_code", "0"),
        ("duration_ms", True),
        ("artifacts", "stdout.log"),
    ],
)
def test_run_fields_with_wrong_types_are_metadata_errors(key: str, value: object) -> None:
    # "Reading still validates every field": a run entry's fields too, or a hand-edited
    # file crashes later (e.g. run_number(True) in `aido logs`).
    data = _v1()
    data["runs"][0][key] = value
    with pytest.raises(MetadataError):
        _load(data)


def test_naive_timestamps_never_crash_expiry() -> None:
    # A timestamp without a zone either is refused on read or still compares with "now".
    data = _json()
    data["expires_at"] = "2026-01-01T10:15:00"
    try:
        record = _load(data)
    except MetadataError:
        return
    assert isinstance(record.expired(), bool)


# -- RunSettings -----------------------------------------------------------------------------


def test_run_settings_from_default_spec() -> None:
    settings = RunSettings.from_config(load_spec(None).model_dump(mode="json"))
    assert settings == RunSettings(
        runtime=None,
        cpus=1.0,
        memory_bytes=512 << 20,
        timeout_seconds=600.0,
        env={},
        network=False,
        filesystem="readonly",
        outputs=[],
        disk_bytes=1 << 30,
        max_files=100_000,
        isolation="default",
    )


def test_run_settings_from_full_spec(tmp_path: Any) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text(
        "runtime: node:20\noutputs: [a.json]\npermissions:\n  network: true\n  filesystem: none\n"
        "env:\n  MODE: fast\n  PORT: 80\nresources:\n  cpu: 2.5\n  memory: 1G\n  timeout: 90s\n"
    )
    settings = RunSettings.from_config(load_spec(path).model_dump(mode="json"))
    assert settings == RunSettings(
        runtime="node:20",
        cpus=2.5,
        memory_bytes=1 << 30,
        timeout_seconds=90.0,
        env={"MODE": "fast", "PORT": "80"},
        network=True,
        filesystem="none",
        outputs=["a.json"],
        disk_bytes=1 << 30,
        max_files=100_000,
        isolation="default",
    )


def test_run_settings_empty_config_means_defaults() -> None:
    settings = RunSettings.from_config({})
    assert (settings.cpus, settings.memory_bytes, settings.timeout_seconds) == (1.0, 512 << 20, 600.0)
    assert settings.network is False
    assert settings.filesystem == "readonly"


@pytest.mark.parametrize("network", ["true", "yes", 1, [True]])
def test_run_settings_network_only_for_a_real_true(network: object) -> None:
    settings = RunSettings.from_config({"permissions": {"network": network}})
    assert settings.network is False


@pytest.mark.parametrize(
    "config",
    [
        {"resources": {"cpu": 0}},
        {"resources": {"cpu": -1}},
        {"resources": {"cpu": "nan"}},
        {"resources": {"cpu": float("inf")}},
        {"resources": {"cpu": 1000}},
        {"resources": {"cpu": "lots"}},
        {"resources": {"memory": "0"}},
        {"resources": {"memory": "1M"}},
        {"resources": {"memory": True}},
        {"resources": {"timeout": 90}},
        {"resources": {"timeout": "2d"}},
        {"resources": ["cpu", 1]},
        {"permissions": {"filesystem": "rw"}},
        {"permissions": "all"},
        {"env": {"A": 1}},
        {"env": ["A=1"]},
    ],
)
def test_run_settings_invalid_config(config: dict[str, Any]) -> None:
    with pytest.raises(MetadataError, match=r"^the sandbox's stored config is invalid: "):
        RunSettings.from_config(config)
