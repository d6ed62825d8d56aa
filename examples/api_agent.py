"""An agent loop on aido's Python API: a "model" proposes code, the sandbox runs it, and
the model sees what happened (exit code, output, files changed) before its next step.

The model here is a fixed script so that the example runs as is (it needs Docker):

    python examples/api_agent.py

Swap ``ScriptedModel`` for a call to your LLM: it gets the transcript, returns the next
snippet (or None when done). The sandbox's limits hold whatever the model writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aido


@dataclass(frozen=True)
class Step:
    code: str
    outcome: aido.RunOutcome


class ScriptedModel:
    """Proposes each snippet in turn; a real model would read the transcript."""

    def __init__(self, snippets: Sequence[str]) -> None:
        self._snippets = list(snippets)

    def next_code(self, transcript: Sequence[Step]) -> str | None:
        if transcript and not transcript[-1].outcome.ok:
            return None  # a real model would try to fix its code
        return self._snippets[len(transcript)] if len(transcript) < len(self._snippets) else None


def feedback(step: Step) -> str:
    """What the model is told about a run."""
    r = step.outcome
    changed = ", ".join(f"{c.kind} {c.path}" for c in r.changes) or "nothing"
    return f"[{r.run_id}] {r.status} (exit {r.exit_code}) in {r.duration:.2f}s; changed {changed}\n{r.stdout}"


def agent(model: ScriptedModel, sandbox: aido.Sandbox, max_steps: int = 5) -> list[Step]:
    transcript: list[Step] = []
    for _ in range(max_steps):
        code = model.next_code(transcript)
        if code is None:
            break
        outcome = sandbox.run_code(code, timeout="30s")
        transcript.append(Step(code, outcome))
        print(feedback(transcript[-1]))
    return transcript


def main() -> int:
    model = ScriptedModel(
        [
            "import json\nprimes = [n for n in range(2, 50) if all(n % d for d in range(2, n))]\n"
            "json.dump(primes, open('/outputs/primes.json', 'w'))\nprint(len(primes), 'primes')",
            "import json\nprint(sum(json.load(open('/outputs/primes.json'))))",
        ]
    )
    with aido.Sandbox(ttl="10m", runtime="python:3.11", memory="256M") as sandbox:
        transcript = agent(model, sandbox)
        files: list[aido.FileInfo] = sandbox.list_outputs()
        primes: list[int] = json.loads(sandbox.get_file("primes.json"))
        print(f"outputs: {[f.path for f in files]}; {len(primes)} primes, largest {primes[-1]}")
        return 0 if transcript and all(step.outcome.ok for step in transcript) else 1


if __name__ == "__main__":
    raise SystemExit(main())
