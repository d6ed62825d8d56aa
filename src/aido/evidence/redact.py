"""Mask values of secret-looking environment variables before anything is persisted."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

REDACTED = "***REDACTED***"
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|KEY|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE|SIGNATURE|DSN)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}


# --- Streaming masking of secret values in captured output --------------------------------------------
#
# A task is given the values of secret-looking variables, and may print them (``env``, a debug dump,
# an error message quoting a URL with a token in it).  The masker sits between the task's output and
# the evidence, GitHub-Actions style: every occurrence of every secret value is replaced by ``MASK``.
#
# Semantics: the bytes covered by the union of all occurrences of all secrets are masked.  Each
# maximal run of overlapping occurrences becomes one ``MASK`` (so where one secret is a prefix or a
# substring of another, the longest match wins, and where two overlap, neither leaks a byte);
# occurrences that merely touch stay separate masks.  The result does not depend on how the stream
# is chunked: a secret split across chunks is found because the masker holds back the last
# ``longest - 1`` bytes of the stream, the only bytes that can still be the start of a secret that
# the next chunk completes.

MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary text; they are not masked
MASK = b"***"


def secret_values(env: dict[str, str]) -> list[str]:
    """Values of secret-looking names (is_secret_name) with len >= MIN_SECRET_LENGTH.

    Deduplicated, longest first (values of equal length keep the order of ``env``).
    """
    values = dict.fromkeys(v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH)
    return sorted(values, key=len, reverse=True)


def short_secret_warnings(env: dict[str, str]) -> list[str]:
    """One warning per secret-looking variable whose value cannot be masked: shorter than
    MIN_SECRET_LENGTH (masking it would mask ordinary text, so the task's output shows it as is),
    or empty (nothing to hide, but likely a mistake: ``-e TOKEN=$UNSET``). Names, never values."""
    warnings = []
    for name, value in env.items():
        if not is_secret_name(name):
            continue
        if not value:
            warnings.append(f"secret-looking variable {name} is empty")
        elif len(value) < MIN_SECRET_LENGTH:
            warnings.append(
                f"secret-looking variable {name} is shorter than {MIN_SECRET_LENGTH} characters: "
                "too short to mask, it is shown as is wherever the task prints it"
            )
    return warnings


def _encode(secret: str) -> bytes:
    # What the task prints is the value's bytes: os.environ keeps undecodable bytes as lone
    # surrogates (surrogateescape), which map back to the very bytes.
    try:
        return secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return secret.encode("utf-8", "surrogatepass")


def _prepare(secrets: Iterable[str], encode: Callable[[str], bytes]) -> list[bytes]:
    """The secrets worth masking, encoded, deduplicated, longest first (ties keep their order)."""
    encoded = dict.fromkeys(encode(s) for s in secrets if len(s) >= MIN_SECRET_LENGTH)
    return sorted(encoded, key=len, reverse=True)


class _Matcher:
    """Finds and masks occurrences of a fixed, non-empty set of secrets (longest first) in a buffer."""

    __slots__ = ("longest", "secrets")

    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = secrets
        self.longest = len(secrets[0])

    def starts(self, buf: bytes, at: int) -> Iterator[tuple[int, int]]:
        """Each position >= at where a secret occurs, in order, with the end of the longest one there."""
        # One bytes.find per secret (memchr-fast), each redone only past the occurrence it found: a
        # secret absent from buf costs one scan.  (A compiled alternation is one pass, but its
        # per-byte cost measured 4 to 10 times higher, for 3 to 80 secrets.)
        secrets = self.secrets
        nexts = [buf.find(s, at) for s in secrets]
        while True:
            start = -1
            index = 0
            for i, pos in enumerate(nexts):
                if pos >= 0 and (start < 0 or pos < start):  # strict: at a tie the longer secret wins
                    start, index = pos, i
            if start < 0:
                return
            yield start, start + len(secrets[index])
            for i, pos in enumerate(nexts):
                if pos == start:
                    nexts[i] = buf.find(secrets[i], start + 1)

    def mask(self, buf: bytes, done: int, limit: int) -> tuple[list[bytes], int]:
        """Mask the occurrences in ``buf`` that start before ``limit``.

        ``buf[:done]`` is already covered by a MASK that was emitted: an occurrence overlapping it
        extends that mask without emitting another.  Returns the pieces to emit and the position up
        to which ``buf`` is accounted for: ``limit``, or further when the last mask runs past it.
        """
        pieces: list[bytes] = []
        pos = done  # buf[:pos] is accounted for
        run_end = done  # end of the current run of overlapping occurrences (== pos)
        for start, end in self.starts(buf, 0):
            if start >= limit:
                break
            if start < run_end:  # overlaps the current run: extend its mask
                run_end = max(run_end, end)
            else:
                if start > pos:
                    pieces.append(buf[pos:start])
                pieces.append(MASK)
                run_end = end
            pos = run_end
        if pos < limit:
            pieces.append(buf[pos:limit])
            pos = limit
        return pieces, pos


class StreamMasker:
    """Replace every occurrence of the secrets in a byte stream by MASK, whatever the chunking.

    ``feed`` returns the bytes that are safe to emit now and holds back at most ``longest - 1``
    bytes, which could be the start of a secret completed by the next chunk; ``flush`` emits them
    at the end of the stream (after which the masker can start a new stream).  Secrets shorter than
    MIN_SECRET_LENGTH characters are not masked; each is matched as its UTF-8 bytes.
    """

    __slots__ = ("_done", "_matcher", "_tail")

    def __init__(self, secrets: Iterable[str]) -> None:
        encoded = _prepare(secrets, _encode)
        self._matcher = _Matcher(encoded) if encoded else None
        self._tail = b""  # the last bytes seen (at most longest - 1), kept for matching
        self._done = 0  # _tail[:_done] was already emitted, as part of a MASK

    @property
    def active(self) -> bool:
        return self._matcher is not None

    def feed(self, data: bytes) -> bytes:
        matcher = self._matcher
        if matcher is None:
            return data
        if not data:
            return b""
        buf = self._tail + data if self._tail else data
        # An occurrence starting before hold ends within buf: it is known in full.  One starting at
        # hold or later might be longer (or only begin) in the bytes still to come.
        hold = max(0, len(buf) - (matcher.longest - 1))
        pieces, pos = matcher.mask(buf, self._done, hold)
        self._tail = buf[hold:]
        self._done = pos - hold
        return b"".join(pieces)

    def flush(self) -> bytes:
        matcher = self._matcher
        if matcher is None or not self._tail:
            self._tail, self._done = b"", 0
            return b""
        pieces, _ = matcher.mask(self._tail, self._done, len(self._tail))
        self._tail, self._done = b"", 0
        return b"".join(pieces)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of the secrets in ``text`` by MASK, as StreamMasker does for bytes."""
    encoded = _prepare(secrets, _encode_text)
    if not encoded:
        return text
    raw = _encode_text(text)
    pieces, _ = _Matcher(encoded).mask(raw, 0, len(raw))
    # Matches of whole encoded strings in an encoded string start and end on character boundaries.
    return b"".join(pieces).decode("utf-8", "surrogatepass")


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
