"""The egress allowlist: a task reaches only the hosts its sandbox (or run) names, through an
egress proxy (Debian's Squid in its own hardened container) whose every decision becomes part
of the run's evidence.

- ``allowlist``: the entries (``pypi.org``, ``*.pythonhosted.org``, ``api.example.com:443``),
  parsed and checked; pure.
- ``squid``: the proxy's configuration generated from them, and its access log parsed; pure.
- ``aido.backends.docker.egress``: the networks and the proxy container of one run.
- ``aido.evidence.network``: the run's network log and counts, from the proxy's own log.
"""

import os

# The proxy's image, built offline by scripts/bootstrap.sh (Debian's squid); AIDO_EGRESS_IMAGE
# names another build of it.
IMAGE = os.environ.get("AIDO_EGRESS_IMAGE") or "aido/egress-squid:bookworm"
