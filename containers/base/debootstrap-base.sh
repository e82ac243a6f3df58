#!/usr/bin/env bash
# Build expforge/python-base:3.11-bookworm, a stand-in for python:3.11-slim, from Debian packages (`make base-image`).
#
# Why: some machines (CI sandboxes, air-gapped clusters) cannot pull from any container registry but do have a
# Debian mirror for apt. Debian bookworm's python3 *is* 3.11, so
#     debootstrap --variant=minbase bookworm  +  python3, python3-venv, ca-certificates
#     tar | docker import
# gives an equivalent base with no registry involved. The mirror comes from the machine's own apt sources
# (containers/base/apt_sources.py), never from this repository; DEBIAN_MIRROR overrides it.
#
# Differences from python:3.11-slim that matter to the images: python3 is /usr/bin/python3 (Debian's build,
# 3.11.2 + security patches) instead of /usr/local/bin/python3; `python` exists through python-is-python3.
#
# Environment: FORCE=1 rebuilds an existing image; IMAGE=... changes the tag; SUITE (bookworm);
# DEBIAN_MIRROR; SECURITY_UPDATES=0 skips applying bookworm-updates/-security on top of the release;
# DEBOOTSTRAP_CACHE (build/debootstrap-cache) keeps the downloaded .debs for re-runs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SUITE=${SUITE:-bookworm}
IMAGE=${IMAGE:-expforge/python-base:3.11-$SUITE}
FORCE=${FORCE:-0}
SECURITY_UPDATES=${SECURITY_UPDATES:-1}
DEBOOTSTRAP_CACHE=${DEBOOTSTRAP_CACHE:-$REPO/build/debootstrap-cache}
# python3-venv brings ensurepip's bundled pip/setuptools wheels, so `python3 -m venv` needs no network.
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates,tzdata,netbase

say() { echo "base-image: $*"; }
die() { echo "base-image: error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || die "Docker is not running: run make docker-up"
if [[ $FORCE != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE already exists (FORCE=1 rebuilds it)"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root: sudo make base-image"
if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "debootstrap is not installed and there is no apt-get to install it"
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

MIRROR=${DEBIAN_MIRROR:-$(python3 "$HERE/apt_sources.py" mirror "$SUITE")} || die "no Debian mirror for $SUITE"
start=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/expforge-debootstrap.XXXXXX")
ROOTFS=$WORK/rootfs
cleanup() {
  # a failed chroot step can leave /proc mounted inside the rootfs; never rm -rf through a mount
  mountpoint -q "$ROOTFS/proc" 2>/dev/null && umount "$ROOTFS/proc" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$DEBOOTSTRAP_CACHE"

say "debootstrap --variant=minbase $SUITE from the machine's mirror $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$DEBOOTSTRAP_CACHE" \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
say "debootstrap done in $((SECONDS - start))s"

# The image keeps the machine's apt sources (main, -updates, -security), so `apt-get install` works inside it
# the same way it does on the host (used by the fonts recipe's FONTS_FROM=apt mode).
python3 "$HERE/apt_sources.py" sources "$SUITE" >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOTFS/etc/apt/sources.list"

# Like the official slim images: no docs, man pages or translations for packages installed later.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/expforge-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
EOF

if [[ $SECURITY_UPDATES == 1 ]]; then
  say "applying $SUITE-updates and $SUITE-security"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mount -t proc proc "$ROOTFS/proc"
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >"$WORK/upgrade.log" 2>&1 ||
    { umount "$ROOTFS/proc"; tail -n 20 "$WORK/upgrade.log" >&2; die "apt-get upgrade in the rootfs failed (SECURITY_UPDATES=0 skips it)"; }
  umount "$ROOTFS/proc"
  : >"$ROOTFS/etc/resolv.conf" # Docker bind-mounts its own at run time
fi

# Keep it small: no package lists, caches, docs, man pages, translations or logs (as python:3.11-slim).
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/usr/share/lintian/* "$ROOTFS"/usr/share/locale/*
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
find "$ROOTFS/usr/lib/python3" "$ROOTFS/usr/lib/python3.11" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
echo "expforge" >"$ROOTFS/etc/hostname"

"$ROOTFS/usr/bin/python3" --version >/dev/null 2>&1 || true # (host may not run it; checked in the image below)

say "docker import -> $IMAGE"
tar --numeric-owner --sort=name -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL org.expforge.image=python-base org.opencontainers.image.title=expforge-python-base org.opencontainers.image.description=debootstrap-minbase-$SUITE-python3" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null

# The contract: python3 is 3.11 and venvs work offline (ensurepip from Debian's bundled wheels).
docker run --rm --network none "$IMAGE" sh -c \
  'python3 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version" &&
   python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version >/dev/null' ||
  die "$IMAGE was imported but python3 3.11 / python3 -m venv does not work in it"
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE ($((size / 1000000)) MB) in $((SECONDS - start))s"
