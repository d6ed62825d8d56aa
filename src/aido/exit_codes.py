"""Exit codes aido itself uses. A task's own exit code is passed through unchanged.

The numbers follow conventions scripts already know: ``timeout`` uses 124, and
``docker run`` uses 125 (the engine or aido failed), 126 (the task could not be
invoked) and 127 (the task was not found). 129, 130 and 143 are the shell's codes
for SIGHUP, SIGINT and SIGTERM (128 + the signal number).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    TAMPERED = 1  # aido verify / export: the evidence was changed (or is invalid)
    USAGE = 2  # bad flag, invalid sandbox.yaml or config file, malformed id
    SANDBOX_STATE = 3  # no such sandbox, no active sandbox, sandbox expired (or destroyed) mid-run
    UNVERIFIABLE = 4  # aido verify: unsealed or running run, signer not trusted, unknown record format
    INTERNAL = 70  # a bug in aido (sysexits EX_SOFTWARE); a crash report names the file
    TIMED_OUT = 124  # the task ran past its timeout and was killed
    RUNTIME = 125  # the engine is unreachable, the image is unavailable, the container failed
    NOT_EXECUTABLE = 126  # the task exists but could not be started
    NOT_FOUND = 127  # the task file does not exist
    KILLED = 137  # killed at its disk or file-count limit (an OOM kill shows 137 too, from the task)
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM
    HANGUP = 129  # SIGHUP: the terminal closed
