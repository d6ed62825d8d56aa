"""What the MCP tools do, without the SDK: the operator's policy applied to every request,
the sandboxes this server created (the only ones an agent can touch), and the calls into
the typed API (aido.Sandbox; the manager only where the API has no call for it: a sandbox
made from the policy's spec). Files are reached through aido.host.sandboxfiles, as the
API reaches them. Blocking: the server runs each call in a worker thread.

Every refusal is an AidoError whose message names the limit or the operator flag, raised
before anything is created or started.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aido import api
from aido.api.sandbox import Sandbox
from aido.errors import AidoError, SandboxNotFound, UsageError
from aido.evidence.events import record_event
from aido.host import sandboxfiles as files
from aido.log import log
from aido.mcp import checks
from aido.mcp.models import (
    Destroyed,
    Evidence,
    FileContent,
    FileEntry,
    OutputList,
    OutputRead,
    RunOutcome,
    SandboxInfo,
    SandboxList,
)
from aido.mcp.views import run_outcome, run_summary, sandbox_info
from aido.store.ids import check_run_id, check_sandbox_id
from aido.store.workspace import STDERR, STDOUT

if TYPE_CHECKING:
    from pathlib import Path

    from aido.config.mcp import McpPolicy
    from aido.manager import SandboxManager


SHUTDOWN_WAIT_SECONDS = 10.0


class AgentService:
    def __init__(self, manager: SandboxManager, policy: McpPolicy) -> None:
        self.manager = manager
        self.policy = policy
        self._owned: dict[str, None] = {}  # created by this server, in order
        self._lock = threading.Lock()  # the count of sandboxes, checked and raised at once
        self._runs = threading.BoundedSemaphore(policy.max_concurrent_runs)
        self._cancels: set[threading.Event] = set()
        self._busy = threading.Condition()
        self._closing = False

    # -- which sandbox a call means -------------------------------------------------

    def owned(self, sandbox_id: str) -> str:
        """The id, if it names a live sandbox this server created; else a clear refusal."""
        check_sandbox_id(sandbox_id)
        if sandbox_id not in self._owned:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id} of this server",
                hint="an agent can use only the sandboxes it created: see list_sandboxes, or create_sandbox",
            )
        if not self.manager.workspace.sandbox(sandbox_id).metadata.exists():
            raise SandboxNotFound(
                f"sandbox {sandbox_id} no longer exists (it expired or was destroyed)",
                hint="create a new one with create_sandbox",
            )
        return sandbox_id

    def events_of(self, sandbox_id: str | None) -> Path:
        """The event log a call about ``sandbox_id`` is recorded in: the sandbox's own
        while it is one of this server's and alive, else the workspace's."""
        if sandbox_id is not None and sandbox_id in self._owned:
            with contextlib.suppress(AidoError):
                paths = self.manager.workspace.sandbox(sandbox_id)
                if paths.metadata.exists():
                    return paths.events
        return self.manager.workspace.events

    def record(self, sandbox_id: str | None, event: str, **fields: Any) -> None:
        try:
            record_event(self.events_of(sandbox_id), event, sandbox_id=sandbox_id, **fields)
        except OSError as exc:  # the call itself must not fail because its record could not be written
            log.warning("could not record %s: %s", event, exc)

    # -- sandboxes --------------------------------------------------------------------

    def _alive(self) -> list[str]:
        workspace = self.manager.workspace
        for sid in list(self._owned):
            if not workspace.sandbox(sid).metadata.exists():
                self._owned.pop(sid, None)  # expired and reaped, or destroyed from the CLI
        return list(self._owned)

    def create_sandbox(self, ask: checks.SandboxAsk) -> SandboxInfo:
        policy = self.policy
        ttl_text, spec = checks.sandbox_spec(policy, ask)
        with self._lock:
            alive = self._alive()
            if len(alive) >= policy.max_sandboxes:
                raise checks.PolicyRefusal(
                    f"this server already has {len(alive)} sandboxes, the operator's limit (--max-sandboxes "
                    f"{policy.max_sandboxes})",
                    hint="destroy one with destroy_sandbox first",
                )
            workspace = self.manager.workspace
            before = workspace.active_id()
            record = self.manager.create(
                name=ask.name,
                runtime=ask.runtime,
                ttl=ttl_text,
                isolation="gvisor" if policy.require_gvisor else ask.isolation,
                given=("create_sandbox", spec),
                # Widening was decided by the operator's policy, just above.
                confirm=lambda warnings: True,
            )
            # An agent's sandbox must not become the operator's active one (`aido run` there).
            workspace.set_active(before)
            self._owned[record.id] = None
        with contextlib.suppress(OSError, AidoError):
            from aido.lifecycle.reaper import ensure_running

            ensure_running(workspace)  # the ttl applies even if this server is killed
        return sandbox_info(record)

    def list_sandboxes(self) -> SandboxList:
        found = []
        for sid in self._alive():
            with contextlib.suppress(AidoError):
                found.append(sandbox_info(self.manager.load(sid)))
        return SandboxList(sandboxes=found, max_sandboxes=self.policy.max_sandboxes)

    def destroy_sandbox(self, sandbox_id: str) -> Destroyed:
        sandbox = self._sandbox(sandbox_id)
        sandbox.destroy()
        self._owned.pop(sandbox.id, None)
        archived = self.manager.workspace.archived(sandbox.id).root
        return Destroyed(
            sandbox_id=sandbox.id, destroyed=True, evidence_kept=str(archived) if archived.is_dir() else None
        )

    def _sandbox(self, sandbox_id: str, manager: SandboxManager | None = None) -> Sandbox:
        """One of this server's sandboxes, as the typed API drives it (kept on exit)."""
        manager = manager or self.manager
        return Sandbox._attached(manager, manager.load(self.owned(sandbox_id)))

    # -- runs ---------------------------------------------------------------------------

    def run_code(self, sandbox_id: str, code: str, ask: checks.RunAsk, cancel: threading.Event) -> RunOutcome:
        options = self._checked(sandbox_id, ask)
        checks.code_size(self.policy, len(code.encode("utf-8", "surrogatepass")))
        return self._run(sandbox_id, cancel, lambda sandbox: sandbox.run_code(code, cancel=cancel, **options))

    def run_file(self, sandbox_id: str, path: str, ask: checks.RunAsk, cancel: threading.Event) -> RunOutcome:
        """Run a file that is already in the sandbox (an earlier run's output, an input):
        read through descriptors (never a link), then run as a task of that name."""
        options = self._checked(sandbox_id, ask)
        parts = files.split_path(path, roots=files.ROOTS)
        read = files.read_file(self._root(sandbox_id), parts, offset=0, limit=self.policy.max_code_bytes + 1)
        checks.code_size(self.policy, read.size, path)
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="aido-mcp-") as tmp:
            task = Path(tmp) / parts[-1]
            task.write_bytes(read.data)
            return self._run(sandbox_id, cancel, lambda sandbox: sandbox.run(task, cancel=cancel, **options))

    def _checked(self, sandbox_id: str, ask: checks.RunAsk) -> dict[str, Any]:
        """The run's options once the sandbox is known to be this server's and the policy
        allows what is asked; every escape hatch asked for was allowed just here."""
        self.owned(sandbox_id)
        return {
            "args": ask.args,
            "timeout": checks.run_timeout(self.policy, ask.timeout),
            "env": ask.env,
            "widen": checks.widening(self.policy, ask.widen, ask.allowed_hosts),
            "confirm": lambda warnings: True,
        }

    def _run(
        self, sandbox_id: str, cancel: threading.Event, start: Callable[[Sandbox], api.RunOutcome]
    ) -> RunOutcome:
        with self._run_slot(cancel) as manager:
            outcome = start(self._sandbox(sandbox_id, manager))
        # Not _root(): a sandbox destroyed meanwhile still gets its finished run's result.
        return run_outcome(outcome, self.manager.workspace.sandbox(outcome.sandbox_id).root)

    @contextlib.contextmanager
    def _run_slot(self, cancel: threading.Event) -> Iterator[SandboxManager]:
        """A turn among the operator's concurrent runs (waited for; a cancel while waiting
        gives up), and a manager of its own: engine adapters are not thread-safe."""
        while not self._runs.acquire(timeout=0.2):
            if cancel.is_set() or self._closing:
                raise UsageError("cancelled while waiting for a free run slot")
        with self._busy:
            self._cancels.add(cancel)
        try:
            if self._closing:
                cancel.set()
            yield self.manager.fork()
        finally:
            with self._busy:
                self._cancels.discard(cancel)
                self._busy.notify_all()
            self._runs.release()

    def _root(self, sandbox_id: str) -> Path:
        return self.manager.workspace.sandbox(self.owned(sandbox_id)).root

    # -- reading what runs left ---------------------------------------------------------

    def _run_dir(self, sandbox_id: str, run_id: str) -> Path:
        sid = self.owned(sandbox_id)
        _, ref = self.manager.run_ref(sid, check_run_id(run_id))
        return self.manager.run_dir(sid, ref.run_id)

    def read_output(
        self, sandbox_id: str, run_id: str, stream: str, offset: int, max_bytes: int
    ) -> OutputRead:
        where = self._run_dir(sandbox_id, run_id)
        data, size = files.read_own(where / (STDOUT if stream == "stdout" else STDERR), offset, max_bytes)
        summary = run_summary(where)
        stats = (summary.get("output") or {}).get(stream) or {}
        return OutputRead(
            sandbox_id=sandbox_id,
            run_id=check_run_id(run_id),
            stream="stdout" if stream == "stdout" else "stderr",
            offset=offset,
            text=data.decode("utf-8", "replace"),
            bytes_read=len(data),
            bytes_total=size,
            eof=offset + len(data) >= size,
            truncated_at_capture=bool(stats.get("truncated")),
        )

    def list_outputs(self, sandbox_id: str) -> OutputList:
        entries, more = files.list_tree(self._root(sandbox_id), "outputs")
        return OutputList(
            sandbox_id=sandbox_id,
            entries=[FileEntry(path=e.path, kind=e.kind, size=e.size, link_target=e.target) for e in entries],
            truncated=more,
        )

    def read_file(self, sandbox_id: str, path: str, offset: int, max_bytes: int) -> FileContent:
        root = self._root(sandbox_id)
        read = files.read_file(
            root, files.split_path(path, roots=files.ROOTS), offset=offset, limit=max_bytes
        )
        try:
            content, encoding = read.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            import base64

            content, encoding = base64.b64encode(read.data).decode("ascii"), "base64"
        return FileContent(
            sandbox_id=sandbox_id,
            path=path,
            size=read.size,
            offset=offset,
            bytes_read=len(read.data),
            encoding=encoding,
            content=content,
            eof=offset + len(read.data) >= read.size,
        )

    def get_evidence(self, sandbox_id: str, run_id: str) -> Evidence:
        where = self._run_dir(sandbox_id, run_id)
        summary = run_summary(where)
        verified: bool | None = None
        try:
            checked = self._sandbox(sandbox_id, self.manager.fork()).verify(run_id)
            verified, message = checked.ok, checked.verdict
        except AidoError as exc:
            message = exc.message
        return Evidence(
            sandbox_id=sandbox_id,
            run_id=check_run_id(run_id),
            summary=summary,
            evidence_dir=str(where),
            verified=verified,
            verify_message=message,
        )

    # -- shutdown -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the runs in progress (each is recorded as interrupted), wait for their
        evidence, then destroy this server's sandboxes unless the operator keeps them."""
        self._closing = True
        with self._busy:
            for cancel in self._cancels:
                cancel.set()
            deadline = time.monotonic() + SHUTDOWN_WAIT_SECONDS
            while self._cancels and time.monotonic() < deadline:
                self._busy.wait(0.1)
        if self.policy.keep_sandboxes:
            return
        alive = self._alive()
        if alive:
            try:
                self.manager.fork().destroy(alive)
            except AidoError as exc:
                log.warning("could not destroy this server's sandboxes: %s", exc.message)
