"""The defaults and bounds of sandbox.yaml's settings, in one place and without pydantic.

The schema (config/schema.py) validates a sandbox.yaml with them at `sandbox up`; the
stored config is checked again with them on every `aido run` (store/records.py), which
must not import pydantic (about 100 ms of start-up).
"""

from __future__ import annotations

DEFAULT_CPU = 1.0
MAX_CPU = 256
DEFAULT_MEMORY = "512M"
MIN_MEMORY_BYTES = 16 << 20
MAX_MEMORY_BYTES = 1 << 40
DEFAULT_TIMEOUT = "10m"
MAX_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_TTL = "15m"
MAX_TTL_SECONDS = 30 * 86400
DEFAULT_DISK = "1G"  # work/ and outputs/ together; also the largest single file
MIN_DISK_BYTES = 1 << 20
MAX_DISK_BYTES = 1 << 44
DEFAULT_FILES = 100_000
MAX_FILES = 10_000_000
ISOLATION_LEVELS = ("default", "gvisor")
FILESYSTEM_MODES = ("readonly", "readwrite", "none")

# Containers a sandbox's warm pool keeps started in advance (`warm: N`); each holds the
# sandbox's memory and CPU limits while it waits, so the pool is kept small.
MAX_WARM = 16
