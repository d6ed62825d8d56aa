#!/usr/bin/env bash
# Bring a bare Debian machine to the point where aido's tests and demo can run:
# a running Docker engine and the default base images. Every step is skipped when
# it is already done, so a rerun costs a few seconds.
#
# Why images are built here: no container registry may be reachable (CI, air-gapped
# hosts), so when `docker pull` fails we build stand-ins from Debian packages and
# tag them with the default image names, so the default runtimes work unchanged.
set -euo pipefail

log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_up() { docker info >/dev/null 2>&1; }

ensure_engine() {
  if engine_up; then
    log "docker engine: already running"
    return
  fi
  if [ -n "$SUDO" ] && $SUDO docker info >/dev/null 2>&1; then
    log "the engine runs, but $(id -un) cannot reach its socket: aido and its tests talk to it directly."
    log "fix: sudo usermod -aG docker $(id -un) (then log in again), or run this as root"
    exit 1
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io (Debian) ..."
    apt_install docker.io
  fi
  engine_up || start_engine
  log "docker engine: $(docker info --format '{{.ServerVersion}}')"
}

start_engine() {
  log "starting dockerd ..."
  # Prefer the init system when there is one; containers and CI usually have none.
  if [ -d /run/systemd/system ] && $SUDO systemctl start docker 2>/dev/null; then
    :
  else
    $SUDO sh -c 'nohup dockerd >>/var/log/aido-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
  if ! engine_up; then
    log "dockerd did not come up; last lines of its log:"
    tail -n 20 /var/log/aido-dockerd.log >&2 || true
    exit 1
  fi
}

# The stand-in image: Debian bookworm minbase with python3 (3.11) and nodejs (18).
# One root filesystem serves both default names; `docker import` of the same tar
# yields the same layer, so the second tag costs nothing.
STANDIN_PACKAGES="python3,nodejs"
CACHE_DIR="${AIDO_BOOTSTRAP_CACHE:-/var/cache/aido-bootstrap}"

build_standin() {
  local tag="$1"
  local tarball="$CACHE_DIR/bookworm-python3-nodejs.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null 2>&1 || { log "installing debootstrap ..."; apt_install debootstrap; }
    local root
    root="$(mktemp -d /tmp/aido-rootfs.XXXXXX)"
    log "debootstrap bookworm into $root (about a minute) ..."
    $SUDO debootstrap --variant=minbase --include="$STANDIN_PACKAGES" bookworm "$root" \
      http://deb.debian.org/debian >/tmp/aido-debootstrap.log 2>&1 || {
        tail -n 20 /tmp/aido-debootstrap.log >&2; exit 1; }
    # `python` as well as `python3`, as in the official python images.
    $SUDO ln -sf python3 "$root/usr/bin/python"
    # Trim what a task never needs, to keep import and container start fast.
    $SUDO rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
      "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"
    $SUDO mkdir -p "$CACHE_DIR"
    $SUDO tar -C "$root" -cf "$tarball.tmp" .
    $SUDO mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$root"
  fi
  log "importing $tag from $tarball"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    --change 'LABEL org.aido.standin=bookworm-python3-nodejs' \
    "$tarball" "$tag" >/dev/null
}

STANDIN_TAG=""
ensure_image() {
  local tag="$1"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "image $tag: present"
    return
  fi
  if timeout 60 docker pull -q "$tag" >/dev/null 2>&1; then
    log "image $tag: pulled"
    return
  fi
  if [ -n "$STANDIN_TAG" ]; then
    log "image $tag: registry unreachable, tagging the local stand-in"
    docker tag "$STANDIN_TAG" "$tag"
    return
  fi
  log "image $tag: registry unreachable, building a local stand-in"
  build_standin "$tag"
  STANDIN_TAG="$tag"
}

# The egress proxy (`permissions.network: {allow: [...]}`, `aido run --allow-host`): Debian's
# Squid in its own minimal image, built here from Debian packages like the stand-in, since no
# registry may be reachable and the proxy is the one component that sees the task's traffic.
# Setuid/setgid bits are stripped (the proxy runs as the unprivileged `proxy` user with no
# capabilities); the entrypoint reads the config aido generates per run.
#
# squid-openssl, not squid: Debian's plain squid is built with GnuTLS, which cannot peek at a
# TLS ClientHello (ssl_bump), and the proxy checks each tunnel's SNI against the allowlist.
# An ssl-bump port needs a certificate even though it never bumps (only peek, splice and
# terminate): a throwaway self-signed one is made here, in the image, and never presented.
# The label says which build an image is; an older image under the same tag is rebuilt.
EGRESS_TAG="${AIDO_EGRESS_IMAGE:-aido/egress-squid:bookworm}"
EGRESS_BUILD="squid-openssl-1"

ensure_egress_image() {
  local have
  have="$(docker image inspect -f '{{index .Config.Labels "org.aido.egress"}}' "$EGRESS_TAG" 2>/dev/null || true)"
  if [ "$have" = "$EGRESS_BUILD" ]; then
    log "image $EGRESS_TAG: present"
    return
  fi
  if [ -n "$have" ]; then log "image $EGRESS_TAG: an older build ($have), rebuilding as $EGRESS_BUILD"; fi
  local tarball="$CACHE_DIR/bookworm-squid-openssl.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null 2>&1 || { log "installing debootstrap ..."; apt_install debootstrap; }
    local root
    root="$(mktemp -d /tmp/aido-squid-rootfs.XXXXXX)"
    log "debootstrap bookworm with squid-openssl into $root (about a minute) ..."
    $SUDO debootstrap --variant=minbase --include=squid-openssl,openssl bookworm "$root" \
      http://deb.debian.org/debian >/tmp/aido-debootstrap-squid.log 2>&1 || {
        tail -n 20 /tmp/aido-debootstrap-squid.log >&2; exit 1; }
    # Security updates: the proxy parses whatever a hostile task sends it.
    printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
      | $SUDO tee "$root/etc/apt/sources.list" >/dev/null
    $SUDO cp /etc/resolv.conf "$root/etc/resolv.conf"
    if ! { $SUDO chroot "$root" apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive $SUDO chroot "$root" apt-get -y -qq upgrade; } >>/tmp/aido-debootstrap-squid.log 2>&1; then
      log "WARNING: could not apply security updates to the proxy image (see /tmp/aido-debootstrap-squid.log)"
    fi
    $SUDO chroot "$root" apt-get clean >/dev/null 2>&1 || true
    # The ssl-bump port's certificate: never presented (nothing is bumped), but Squid
    # refuses an ssl-bump port without one. Readable by the proxy user only.
    $SUDO chroot "$root" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -nodes -days 3650 -subj /CN=aido-egress-never-presented \
      -keyout /etc/squid/aido-peek.key -out /etc/squid/aido-peek.pem >>/tmp/aido-debootstrap-squid.log 2>&1 || {
        tail -n 20 /tmp/aido-debootstrap-squid.log >&2; exit 1; }
    $SUDO chroot "$root" chown proxy:proxy /etc/squid/aido-peek.key /etc/squid/aido-peek.pem
    $SUDO chmod 0400 "$root/etc/squid/aido-peek.key"
    $SUDO sh -c ': > "$1/etc/resolv.conf"' sh "$root"
    $SUDO rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/archives/"*.deb \
      "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale"
    $SUDO find "$root" -xdev -type f \( -perm -4000 -o -perm -2000 \) -exec chmod ug-s {} +
    $SUDO mkdir -p "$CACHE_DIR"
    $SUDO tar -C "$root" -cf "$tarball.tmp" .
    $SUDO mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$root"
  fi
  log "importing $EGRESS_TAG from $tarball"
  docker import \
    --change 'USER proxy' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/sbin/squid", "-N", "-f", "/etc/squid/squid.conf"]' \
    --change "LABEL org.aido.egress=$EGRESS_BUILD" \
    "$tarball" "$EGRESS_TAG" >/dev/null
}

# gVisor: `runsc` registered with the engine as the runtime "runsc", so aido can run
# tasks under a user-space kernel (`--runtime runsc`). Optional: when it cannot be set
# up the script warns loudly and goes on, since the default runtime (runc) still works.
# AIDO_SKIP_GVISOR=1 skips this step; AIDO_REQUIRE_GVISOR=1 (CI) makes a failure fatal.
DAEMON_JSON=/etc/docker/daemon.json
WARNINGS=()

warn() {
  log "WARNING: $*"
  WARNINGS+=("$*")
}

runsc_registered() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

# runsc applies the container's seccomp profile (Docker's default: no unshare(CLONE_NEWUSER),
# no keyctl, ...) inside its sandbox only with --oci-seccomp; without it a task under gVisor
# escapes the profile that the evidence records. The engine's view, not daemon.json's, counts.
runsc_ready() {
  docker info --format '{{json .Runtimes.runsc}}' 2>/dev/null | grep -q -- '"--oci-seccomp"'
}

dockerd_pid() {
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  [ -n "$pid" ] || pid="$(pidof dockerd 2>/dev/null | awk '{print $1}')"
  printf '%s' "$pid"
}

# Make dockerd re-read daemon.json: SIGHUP reloads the runtimes list without touching
# running containers. Restart it only if the reload did not take.
reload_engine() {
  local pid
  if [ -d /run/systemd/system ] && systemctl is-active --quiet docker 2>/dev/null; then
    $SUDO systemctl reload docker || true
  else
    pid="$(dockerd_pid)"
    if [ -n "$pid" ]; then $SUDO kill -HUP "$pid" || true; fi
  fi
  for _ in $(seq 1 20); do
    runsc_ready && return 0
    sleep 0.5
  done
  log "dockerd did not pick up the runtime on reload; restarting it ..."
  if [ -d /run/systemd/system ] && systemctl is-active --quiet docker 2>/dev/null; then
    $SUDO systemctl restart docker
  else
    pid="$(dockerd_pid)"
    if [ -n "$pid" ]; then
      $SUDO kill -TERM "$pid" || true
      for _ in $(seq 1 60); do
        $SUDO kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
    fi
    start_engine
  fi
  runsc_ready
}

# Add runtimes.runsc to daemon.json, keeping everything else in it; an existing runsc
# entry keeps its path and arguments and gets the ones below that it lacks.
# --network=none: runsc's own network stack cannot be set up in every VM, and aido's
# tasks run without a network anyway. --oci-seccomp: see runsc_ready.
register_runsc() {
  local runsc_path="$1"
  $SUDO mkdir -p "$(dirname "$DAEMON_JSON")"
  $SUDO python3 -c '
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read()
except FileNotFoundError:
    text = ""
try:
    cfg = json.loads(text) if text.strip() else {}
except ValueError as e:
    sys.exit(f"{path} is not valid JSON ({e}); not touching it")
if not isinstance(cfg, dict) or not isinstance(cfg.get("runtimes", {}), dict):
    sys.exit(f"{path}: unexpected layout; not touching it")
runtimes = cfg.setdefault("runtimes", {})
wanted = ["--network=none", "--oci-seccomp"]
entry = runtimes.get("runsc")
if entry is None:
    runtimes["runsc"] = {"path": runsc, "runtimeArgs": wanted}
else:
    if not isinstance(entry, dict) or not isinstance(entry.get("runtimeArgs", []), list):
        sys.exit(f"{path}: unexpected runtimes.runsc; not touching it")
    args = entry.setdefault("runtimeArgs", [])
    missing = [a for a in wanted if a not in args]
    if not missing:
        sys.exit(0)
    args.extend(missing)
    print(path + ": adding " + " ".join(missing) + " to the runsc runtime", file=sys.stderr)
tmp = path + ".aido-tmp"
with open(tmp, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
if os.path.exists(path):
    st = os.stat(path)
    os.chmod(tmp, st.st_mode & 0o7777)
os.replace(tmp, path)
' "$DAEMON_JSON" "$runsc_path"
}

ensure_gvisor() {
  if [ "${AIDO_SKIP_GVISOR:-0}" = 1 ]; then
    log "gVisor runtime: skipped (AIDO_SKIP_GVISOR=1)"
    return
  fi
  if runsc_ready; then
    log "gVisor runtime runsc: already registered (with --oci-seccomp)"
    return
  fi
  if runsc_registered; then
    log "gVisor runtime runsc: registered without --oci-seccomp, so seccomp is not applied under gVisor; upgrading"
  fi
  if ! command -v runsc >/dev/null 2>&1; then
    log "installing runsc (gVisor, Debian) ..."
    if ! apt_install runsc || ! command -v runsc >/dev/null 2>&1; then
      warn "could not install runsc (gVisor): the runsc runtime is NOT available; containers use runc only"
      return
    fi
  fi
  command -v python3 >/dev/null 2>&1 || { log "installing python3 (to edit daemon.json) ..."; apt_install python3; }
  local runsc_path
  runsc_path="$(command -v runsc)"
  log "gVisor: $("$runsc_path" --version 2>/dev/null | head -n 1)"
  log "registering runsc ($runsc_path) in $DAEMON_JSON ..."
  if ! register_runsc "$runsc_path"; then
    warn "could not register runsc with --network=none --oci-seccomp in $DAEMON_JSON (see above)"
    return
  fi
  if ! reload_engine; then
    warn "dockerd does not list the runsc runtime with --oci-seccomp after a reload and a restart (see /var/log/aido-dockerd.log)"
    return
  fi
  log "gVisor runtime runsc: registered"
}

ensure_engine
for image in ${AIDO_BOOTSTRAP_IMAGES:-python:3.11-slim node:18-alpine debian:bookworm-slim}; do
  ensure_image "$image"
done
ensure_egress_image
ensure_gvisor
if [ "${#WARNINGS[@]}" -gt 0 ]; then
  for w in "${WARNINGS[@]}"; do
    log "WARNING: $w"
    # A visible annotation on the CI run page, not only a line in the log.
    if [ "${GITHUB_ACTIONS:-}" = true ]; then printf '::warning title=bootstrap::%s\n' "$w"; fi
  done
  if [ "${AIDO_REQUIRE_GVISOR:-0}" = 1 ]; then
    log "AIDO_REQUIRE_GVISOR=1: failing"
    exit 1
  fi
  log "ready (with warnings above)"
else
  log "ready"
fi
