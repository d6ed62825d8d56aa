"""``sandbox.json``: what aido knows about a sandbox; its runs are in ``runs.jsonl``.

Plain dataclasses rather than pydantic on purpose: this file is read on every
``aido run``, and importing pydantic would add ~0.1 s to each (user input,
``sandbox.yaml``, is still validated by pydantic at ``sandbox up``). Reading
still validates every field, so a hand-edited or truncated file gives a clear
error instead of a crash. ``schema_version`` guards the format: older versions
are migrated on read, newer ones refused. Version 2 moved the runs list out into the
append-only run index (aido.store.runindex): a run no longer rewrites this file.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aido.config import limits
from aido.config.units import parse_duration, parse_size
from aido.errors import MetadataError
from aido.store.ids import run_number
from aido.values import dataclass, field

SCHEMA_VERSION = 2
RUN_STATUSES = (
    "running",
    "success",
    "failed",
    "timed_out",
    "interrupted",
    "expired",
    "disk_limit",
    "error",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class RunRef:
    """One run as the run index lists it (the spec's run metadata); the full record is its summary.json."""

    run_id: str
    task: str
    status: str
    started_at: str
    completed_at: str | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    evidence: str = ""
    artifacts: list[str] = field(default_factory=list)


@dataclass
class SandboxRecord:
    id: str
    created_at: str
    expires_at: str
    config: dict[str, Any]
    task_user: str
    name: str | None = None
    status: str = "created"
    runtime_backend: str = "docker"
    auto_cleanup: bool = True
    schema_version: int = SCHEMA_VERSION
    # Set once, when the sandbox is destroyed and its evidence archived (status "destroyed").
    destroyed_at: str | None = None
    destroy_reason: str | None = None  # "destroyed" (by a command) or "expired" (its ttl)
    # Not saved in sandbox.json. Where the runs are (runs.jsonl), set by the store's loaders:
    # ``runs`` reads it on first use, so a load that never looks at the runs (`aido run`'s)
    # costs the same at the 10,000th run as at the first.
    run_index: Path | None = field(default=None, repr=False, compare=False)
    # A schema-1 file's runs list, until the store moves it into the index (which wins).
    legacy_runs: list[RunRef] | None = field(default=None, repr=False, compare=False)
    _runs: list[RunRef] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def runs(self) -> list[RunRef]:
        """Every run, each as its last index line has it (MetadataError if the index is bad)."""
        if self._runs is None:
            from aido.store import runindex

            indexed = runindex.read(self.run_index) if self.run_index is not None else []
            self._runs = runindex.merged(self.legacy_runs or (), indexed)
        return self._runs

    def runs_read(self) -> list[RunRef]:
        """The runs if they were read already (by a migration, say), else []; never reads."""
        return self._runs or []

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SAVED}
        for key in ("destroyed_at", "destroy_reason"):
            if data[key] is None:
                del data[key]  # a live sandbox's file stays as it always was
        # Keep the spec's key order at the top: id, created_at, status, config, runs.
        ordered = {
            k: data.pop(k) for k in ("schema_version", "id", "name", "created_at", "expires_at", "status")
        }
        return {**ordered, **data}

    def to_bytes(self) -> bytes:
        """sandbox.json's text, indented."""
        if self.legacy_runs is not None:
            # Saving now would drop the runs: the store moves them into the index first.
            raise RuntimeError(f"sandbox {self.id}: its runs must move into the run index before a save")
        return (json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= parse_time(self.expires_at)

    def run(self, run_id: str) -> RunRef | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    @classmethod
    def from_json(cls, data: Any, *, source: str, run_index: Path | None = None) -> SandboxRecord:
        """The record of sandbox.json's parsed ``data``; its runs come from ``run_index``
        (and, in a schema-1 file, from its own runs list, which the index overrides)."""
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: expected a JSON object")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise MetadataError(f"{source}: schema_version must be an integer")
        if version > SCHEMA_VERSION:
            raise MetadataError(
                f"{source} was written by a newer aido (metadata version {version}, this aido reads up to "
                f"{SCHEMA_VERSION})",
                hint="use a newer aido (`pip install -U .` in a newer checkout of aido)",
            )
        try:
            data = migrate(data, version)
            legacy = [RunRef(**_checked_run(r)) for r in _typed(data, "runs", list)] if version < 2 else None
            return cls(
                id=_typed(data, "id", str),
                created_at=_time(data, "created_at"),
                expires_at=_time(data, "expires_at"),
                config=_typed(data, "config", dict),
                task_user=_typed(data, "task_user", str),
                name=_typed(data, "name", (str, type(None))),
                status=_typed(data, "status", str),
                runtime_backend=_typed(data, "runtime_backend", str),
                auto_cleanup=_typed(data, "auto_cleanup", bool),
                schema_version=SCHEMA_VERSION,
                destroyed_at=_time(data, "destroyed_at") if data.get("destroyed_at") is not None else None,
                destroy_reason=_typed(data, "destroy_reason", (str, type(None)))
                if "destroy_reason" in data
                else None,
                run_index=run_index,
                legacy_runs=legacy,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetadataError(
                f"{source} is invalid: {exc}", hint="restore it or destroy the sandbox"
            ) from None


def migrate(data: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring older metadata up to SCHEMA_VERSION, one step per version."""
    if version == 0:
        # Pre-release files had no version, no expiry and no task user.
        data = dict(data)
        created = parse_time(str(data.get("created_at")))
        ttl = parse_duration(str((data.get("config") or {}).get("ttl", limits.DEFAULT_TTL)))
        data.setdefault("expires_at", isoformat(datetime.fromtimestamp(created.timestamp() + ttl, UTC)))
        data.setdefault("task_user", "10001:10001")
        data.setdefault("runtime_backend", "docker")
        data.setdefault("auto_cleanup", True)
        data.setdefault("name", (data.get("config") or {}).get("name"))
        data["schema_version"] = 1
    # 1 -> 2: the runs list moves into runs.jsonl. That is a write, done by the store under
    # the sandbox's lock (SandboxStore.migrate_runs); until then from_json keeps the list.
    return data


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: `true` must not pass where a number or string is expected.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise TypeError(f"{key} has the wrong type ({type(value).__name__})")
    return value


def _time(data: dict[str, Any], key: str) -> str:
    value = _typed(data, key, str)
    if parse_time(value).tzinfo is None:
        raise ValueError(f"{key} {value!r} has no timezone")
    return str(value)


_NOT_SAVED = frozenset({"run_index", "legacy_runs", "_runs"})
_RUN_FIELDS = frozenset(RunRef.__dataclass_fields__)
_STATUS_SET = frozenset(RUN_STATUSES)
_AIDO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_INT_OR_NONE = (int, type(None))


def _run_ok(run: Any) -> bool:
    """The fast check, for runs as aido writes them: the run index (and a schema-1
    sandbox.json) holds every run so far. Anything it does not accept gets the full check,
    which also says what is wrong."""
    if type(run) is not dict or not run.keys() <= _RUN_FIELDS:
        return False
    run_id, started, completed = run.get("run_id"), run.get("started_at"), run.get("completed_at")
    artifacts = run.get("artifacts", [])
    return (
        type(run_id) is str
        and run_number(run_id) is not None
        and type(run.get("task")) is str
        and run.get("status") in _STATUS_SET
        and type(started) is str
        and _AIDO_TIME.fullmatch(started) is not None
        and (completed is None or (type(completed) is str and _AIDO_TIME.fullmatch(completed) is not None))
        and type(run.get("duration_ms")) in _INT_OR_NONE
        and type(run.get("exit_code")) in _INT_OR_NONE
        and type(run.get("evidence", "")) is str
        and type(artifacts) is list
        and all(type(a) is str for a in artifacts)
    )


def _checked_run(run: Any) -> dict[str, Any]:
    if _run_ok(run):
        return dict(run)
    if not isinstance(run, dict):
        raise TypeError("runs must be objects")
    unknown = set(run) - _RUN_FIELDS
    if unknown:
        raise ValueError(f"unknown run field(s): {', '.join(sorted(unknown))}")
    for key in ("run_id", "task", "status"):
        _typed(run, key, str)
    if run_number(run["run_id"]) is None:
        raise ValueError(f"run id {run['run_id']!r} is invalid")
    if run["status"] not in RUN_STATUSES:
        raise ValueError(f"run status {run['status']!r} is not one of {', '.join(RUN_STATUSES)}")
    _time(run, "started_at")
    if run.get("completed_at") is not None:
        _time(run, "completed_at")
    for key in ("duration_ms", "exit_code"):
        if run.get(key) is not None:
            _typed(run, key, int)
    if "evidence" in run:
        _typed(run, "evidence", str)
    if "artifacts" in run and not all(isinstance(a, str) for a in _typed(run, "artifacts", list)):
        raise ValueError("run artifacts must be strings")
    return run


@dataclass(frozen=True)
class RunSettings:
    """The limits and permissions a run applies, read from the stored sandbox config."""

    runtime: str | None
    cpus: float
    memory_bytes: int
    timeout_seconds: float
    env: dict[str, str]
    network: bool
    filesystem: str
    outputs: list[str]
    disk_bytes: int
    max_files: int
    isolation: str
    disk_quota: str = "soft"
    warm: int = 0  # containers the pool keeps started in advance (run/warm.py)
    # permissions.network's allowlist (aido.egress.allowlist's canonical entries); ``network``
    # stays "full network", never set with it.
    egress: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunSettings:
        try:
            resources = config.get("resources") or {}
            permissions = config.get("permissions") or {}
            env = config.get("env") or {}
            cpus = float(resources.get("cpu", limits.DEFAULT_CPU))
            if not 0 < cpus <= limits.MAX_CPU:
                raise ValueError(f"resources.cpu {cpus} is out of range")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
                raise ValueError("env must map names to strings")
            files = resources.get("files", limits.DEFAULT_FILES)
            if isinstance(files, bool) or not isinstance(files, int) or not 0 < files <= limits.MAX_FILES:
                raise ValueError(f"resources.files {files!r} is out of range")
            isolation = config.get("isolation", "default")
            if isolation not in limits.ISOLATION_LEVELS:
                raise ValueError(f"isolation {isolation!r} is invalid")
            filesystem = permissions.get("filesystem", "readonly")
            if filesystem not in limits.FILESYSTEM_MODES:
                raise ValueError(f"permissions.filesystem {filesystem!r} is invalid")
            return cls(
                runtime=config.get("runtime"),
                cpus=cpus,
                memory_bytes=parse_size(
                    resources.get("memory", limits.DEFAULT_MEMORY), minimum=limits.MIN_MEMORY_BYTES
                ),
                timeout_seconds=parse_duration(
                    resources.get("timeout", limits.DEFAULT_TIMEOUT), maximum=limits.MAX_TIMEOUT_SECONDS
                ),
                env=dict(env),
                network=permissions.get("network", False) is True,
                filesystem=filesystem,
                outputs=[str(o) for o in config.get("outputs") or []],
                disk_bytes=parse_size(
                    resources.get("disk", limits.DEFAULT_DISK),
                    minimum=limits.MIN_DISK_BYTES,
                    maximum=limits.MAX_DISK_BYTES,
                ),
                max_files=files,
                isolation=isolation,
                disk_quota="hard" if resources.get("disk_quota") == "hard" else "soft",
                warm=_warm(config.get("warm", 0)),
                egress=_egress(permissions.get("network")),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise MetadataError(f"the sandbox's stored config is invalid: {exc}") from None


def configured_allowlist(permissions: object) -> list[str]:
    """``permissions.network``'s allowlist as a sandbox's config (or a run summary's copy of
    it) records it, as text and unchecked: [] without one. RunSettings.from_config checks it."""
    network = permissions.get("network") if isinstance(permissions, dict) else None
    allow = network.get("allow") if isinstance(network, dict) else None
    return [str(entry) for entry in allow] if isinstance(allow, list) else []


def _egress(network: object) -> tuple[str, ...]:
    """The stored allowlist, checked again (it is a security boundary): canonical entries."""
    if not isinstance(network, dict):
        return ()
    from aido.egress.allowlist import parse_allowlist

    entries = parse_allowlist(network.get("allow"), allow_ip_ranges=network.get("allow_ip_ranges") is True)
    if not entries:
        raise ValueError("permissions.network.allow is empty")
    return tuple(str(e) for e in entries)


def _warm(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limits.MAX_WARM:
        raise ValueError(f"warm {value!r} is out of range")
    return value
