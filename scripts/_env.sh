# Sourced by demo.sh and test.sh: engine, images and a virtualenv with aido installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# mkfs.ext4 for `resources.disk_quota: hard` (a filesystem per sandbox; the tests use it).
command -v mkfs.ext4 >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 >/dev/null 2>&1 \
  || need_apt+=(e2fsprogs)
# jq and openssl (>= 3): the README's third-party check of a bundle (scripts/verify-bundle.sh).
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[setup] installing ${need_apt[*]} ..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" python3-venv >/dev/null
fi

bash "$ROOT/scripts/bootstrap.sh"

VENV="${AIDO_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV ..." >&2
  python3 -m venv "$VENV"
fi
# test.sh asks for the ray extra too (the cluster tests start a real Ray cluster).
EXTRAS="${AIDO_EXTRAS:-dev}"
stamp="$VENV/.aido-installed-${EXTRAS//,/-}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "[setup] installing aido and its test tools into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
