#!/usr/bin/env bash
# Installs what the dashboard's browser tests drive: Debian's `chromium`
# (when /usr/bin/chromium is missing; sudo only when not root) and npm
# `playwright-core` into the cached node prefix (no browser download:
# the tests launch /usr/bin/chromium). Idempotent: a second run is a no-op.
set -euo pipefail
cache="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
prefix="$cache/browser"
version="1.57.0"
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
fi
pkg="$prefix/node_modules/playwright-core/package.json"
if [ -f "$pkg" ] && grep -q "\"version\": \"$version\"" "$pkg"; then
  exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save "playwright-core@$version" >&2
grep -q "\"version\": \"$version\"" "$pkg"
echo "setup-browser: chromium $(/usr/bin/chromium --version 2>/dev/null | tr -d '\n'), playwright-core@$version in $prefix/node_modules" >&2
