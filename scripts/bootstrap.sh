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
  if ! engine_up; then
    log "starting dockerd ..."
    # Prefer the init system when there is one; containers and CI usually have none.
    if [ -d /run/systemd/system ] && $SUDO systemctl start docker 2>/dev/null; then
      :
    else
      $SUDO sh -c 'nohup dockerd >/var/log/aido-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do
      engine_up && break
      sleep 1
    done
  fi
  if ! engine_up; then
    log "dockerd did not come up; last lines of its log:"
    tail -n 20 /var/log/aido-dockerd.log >&2 || true
    exit 1
  fi
  log "docker engine: $(docker info --format '{{.ServerVersion}}')"
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

ensure_engine
for image in ${AIDO_BOOTSTRAP_IMAGES:-python:3.11-slim node:18-alpine debian:bookworm-slim}; do
  ensure_image "$image"
done
log "ready"
