#!/usr/bin/env bash
# Make sure a Docker daemon answers `docker info` (`make docker-up`); idempotent.
#
# Why a script and not `systemctl start docker`: CI machines and dev containers often have no init system, so
# dockerd is started directly in the background with its own log file. The steps, each only when needed:
#   1. `docker info` already works            -> nothing to do.
#   2. dockerd is missing and we are root      -> apt-get install docker.io (Debian/Ubuntu).
#   3. systemd is running                      -> systemctl start docker.
#      otherwise                               -> dockerd in the background (log: $DOCKERD_LOG).
#   4. wait up to $DOCKER_WAIT_S seconds for `docker info`.
# Storage driver: dockerd picks overlay2 where the backing filesystem supports it (ext4/xfs); on an overlay
# root (Docker-in-Docker, some CI runners) overlay2 cannot start and we retry once with vfs (slow, but works).
# Force one with DOCKER_STORAGE_DRIVER=overlay2|vfs|...
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/expforge-dockerd.log}
DOCKER_WAIT_S=${DOCKER_WAIT_S:-60}
DOCKER_STORAGE_DRIVER=${DOCKER_STORAGE_DRIVER:-}

say() { echo "docker-up: $*"; }
die() { echo "docker-up: error: $*" >&2; exit 1; }

docker_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

wait_for_daemon() {
  # $1: pid of the dockerd we started (empty when systemd started it)
  local pid=${1:-} deadline=$((SECONDS + DOCKER_WAIT_S))
  while ((SECONDS < deadline)); do
    docker_ok && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1 # dockerd exited: no point in waiting
    fi
    sleep 1
  done
  return 1
}

start_dockerd() {
  # $1: storage driver ("" = dockerd's own choice); echoes the pid
  local args=()
  [[ -n ${1:-} ]] && args+=(--storage-driver "$1")
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # setsid: the daemon must outlive this script and the make that ran it.
  setsid nohup dockerd "${args[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  echo $!
}

if docker_ok; then
  say "daemon already running ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null))"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "dockerd not installed: apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  else
    die "dockerd is not installed; install Docker (Debian: sudo apt-get install docker.io) and re-run make docker-up"
  fi
fi
command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed (Debian: apt-get install docker.io)"

if [[ $(id -u) -ne 0 ]]; then
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    die "Docker is installed but not running (or you lack access): sudo systemctl start docker; and add yourself to the docker group"
  fi
  die "Docker is installed but not running, and starting dockerd needs root: sudo make docker-up"
fi

if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  say "starting docker with systemctl"
  systemctl start docker || true
  wait_for_daemon "" && { say "daemon ready"; exit 0; }
  say "systemctl could not start docker; starting dockerd directly"
fi

# A stale pid file from a killed daemon stops dockerd from starting; remove it only when its process is gone.
if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi

say "starting dockerd in the background (log: $DOCKERD_LOG)"
pid=$(start_dockerd "$DOCKER_STORAGE_DRIVER")
if ! wait_for_daemon "$pid"; then
  if [[ -z $DOCKER_STORAGE_DRIVER ]] && ! kill -0 "$pid" 2>/dev/null; then
    say "dockerd exited (see $DOCKERD_LOG); retrying with the vfs storage driver"
    pid=$(start_dockerd vfs)
    wait_for_daemon "$pid" || true
  fi
fi
if ! docker_ok; then
  kill -0 "$pid" 2>/dev/null && kill "$pid" 2>/dev/null || true
  tail -n 15 "$DOCKERD_LOG" >&2 || true
  die "the Docker daemon did not answer within ${DOCKER_WAIT_S}s (full log: $DOCKERD_LOG)"
fi
say "daemon ready ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null))"
