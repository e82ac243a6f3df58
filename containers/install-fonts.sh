#!/usr/bin/env bash
# Install the Debian font packages given as arguments, when they are missing (`make fonts`).
#
# Why: the synthetic-digit renderer draws from the system fonts, and the render-font-digits image is built from
# the same packages (the image build copies their installed files, see containers/build_images.py), so host
# and image render the same typefaces. Fonts cannot come from pip.
#   - all installed            -> nothing to do (no apt-get update, so this is instant and works offline)
#   - missing, root, apt       -> apt-get update (once) + apt-get install --no-install-recommends
#   - missing, not root/no apt -> print what to install and carry on (the renderer uses whatever fonts exist)
set -euo pipefail

say() { echo "fonts: $*"; }

if (($# == 0)); then
  echo "usage: $0 DEBIAN_FONT_PACKAGE..." >&2
  exit 2
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  say "not a Debian-based system; install fonts like these with your package manager: $*"
  exit 0
fi

missing=()
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  say "all $# font packages installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  say "missing font packages (the renderer will use the fonts it finds): ${missing[*]}"
  say "to install them: sudo apt-get install --no-install-recommends ${missing[*]}"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "installing ${missing[*]}"
# Package lists are only fetched when a package is unknown to the local cache (fresh machines, slim images).
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
say "installed ${#missing[@]} package(s)"
