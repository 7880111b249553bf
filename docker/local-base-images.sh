#!/usr/bin/env bash
# Local stand-ins for the base images that docker/Dockerfile and docker/docker-compose.yml use.
#
# Why: on machines that cannot reach the public image registries (Docker Hub, ghcr.io) but can reach
# Debian's apt mirrors and PyPI, `docker build` fails at its first FROM. This script builds stand-ins
# offline-from-registries and tags them under the SAME names the Dockerfile and compose use by default,
# so the build args can stay at their defaults (or point at other names given below):
#
#   python:3.11-slim-bookworm   Debian bookworm minbase root filesystem (mmdebstrap) with Debian's
#                               python3.11, python3-venv, python-is-python3, ca-certificates; apt
#                               points at this machine's mirrors (APT_SOURCES) and this machine's CA
#                               bundle is trusted inside (SSL_CERT_FILE set, for uv/pip TLS).
#                               python/python3 are /usr/bin (not /usr/local/bin), there is no pip in
#                               the system python: the Dockerfile only needs `uv venv` to find it.
#   ghcr.io/astral-sh/uv:0.13.9 the static `uv` (and `uvx`) binary from PyPI's uv wheel (musllinux
#                               x86_64 build) at /uv and /uvx, like the real image.
#   redis:7.4-alpine            NOT alpine and NOT redis 7.4: Debian bookworm's redis-server and
#                               redis-tools (7.0) on a minbase root filesystem, with an entrypoint that
#                               behaves like the official image's (drops to user redis, /data owned
#                               by it, protected mode off as the official build has it).
#
# The real images are better wherever they can be pulled: this is a workaround, not a replacement.
#
# Usage: docker/local-base-images.sh [--force] [python] [uv] [redis]
#   no names: all three. An image that already exists is skipped unless --force is given.
#   Needs: root (mmdebstrap; installed with apt-get if missing), a running docker daemon,
#   python3 with pip (to fetch the uv wheel), network access to the apt mirrors and PyPI.
# Environment (defaults in brackets):
#   PYTHON_IMAGE [python:3.11-slim-bookworm]  UV_IMAGE [ghcr.io/astral-sh/uv:0.13.9]
#   REDIS_IMAGE [redis:7.4-alpine]            UV_VERSION [the tag of UV_IMAGE]
#   SUITE [bookworm]  APT_SOURCES [/etc/apt/sources.list.d/debian.sources]
#   CA_BUNDLE [/etc/ssl/certs/ca-certificates.crt]  PYTHON [python3, the host one running pip]
# (mmdebstrap hooks get the root filesystem as "$1", expanded by mmdebstrap: single quotes on purpose)
# shellcheck disable=SC2016
set -euo pipefail

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
UV_IMAGE=${UV_IMAGE:-ghcr.io/astral-sh/uv:0.13.9}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7.4-alpine}
UV_VERSION=${UV_VERSION:-${UV_IMAGE##*:}}
SUITE=${SUITE:-bookworm}
APT_SOURCES=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PYTHON=${PYTHON:-python3}
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() { sed -n '2,/^set -euo/{/^set -euo/d;/mmdebstrap hooks get\|shellcheck/d;s/^# \{0,1\}//;p}' "$0"; }
log() { printf '[local-base-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --force|-f) force=1 ;;
    -h|--help) usage; exit 0 ;;
    python|uv|redis) targets+=("$arg") ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(python uv redis)

docker info >/dev/null 2>&1 || die "no docker daemon reachable (start one, e.g. dockerd --bridge=none --iptables=false --ip-masq=false)"
[ -r "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE not readable"

work=$(mktemp -d "${TMPDIR:-/tmp}/local-base-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return 0
  log "installing mmdebstrap with apt-get"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2
}

# The apt sources for the images: this machine's deb822 file, else deb.debian.org.
sources_file() {
  local f="$work/debian.sources"
  if [ -r "$APT_SOURCES" ]; then
    cp "$APT_SOURCES" "$f"
  else
    log "$APT_SOURCES missing: using deb.debian.org"
    cat >"$f" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  printf '%s\n' "$f"
}

# Customize hook: trust every certificate of CA_BUNDLE inside the root filesystem ($1). Those not
# already in Debian's bundle go to /usr/local/share/ca-certificates, so update-ca-certificates (run
# now, or later by a package upgrade) keeps them.
write_ca_hook() {
  cat >"$work/ca-hook.sh" <<'EOF'
#!/bin/sh
set -eu
root=$1 bundle=$2
mkdir -p "$root/usr/local/share/ca-certificates"
n=$(awk -v outdir="$root/usr/local/share/ca-certificates" '
  FNR == 1 { file_no++ }
  { sub(/\r$/, "") }
  /-----BEGIN CERTIFICATE-----/ { in_cert = 1; body = ""; pem = "" }
  in_cert { pem = pem $0 "\n"; if ($0 !~ /-----/) body = body $0 }
  /-----END CERTIFICATE-----/ {
    in_cert = 0; gsub(/[ \t]/, "", body)
    if (file_no == 1) seen[body] = 1
    else if (!(body in seen)) {
      seen[body] = 1; n++
      out = sprintf("%s/host-ca-%03d.crt", outdir, n); printf "%s", pem > out; close(out)
    }
  }
  END { print n + 0 }' "$root/etc/ssl/certs/ca-certificates.crt" "$bundle")
echo "ca-hook: $n certificate(s) of $bundle not in Debian's bundle added" >&2
if [ "$n" -gt 0 ]; then chroot "$root" update-ca-certificates >&2; fi
EOF
  chmod +x "$work/ca-hook.sh"
}

# mmdebstrap SUITE minbase root filesystem -> $1 (tarball), packages $2 (comma list), extra args after.
debian_rootfs() {
  local out=$1 include=$2; shift 2
  local src; src=$(sources_file)
  ensure_mmdebstrap
  # Like Debian's slim images: no docs, man pages or translations (kept in dpkg.cfg.d for later installs).
  mmdebstrap --variant=minbase --format=tar --include="$include" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/linda/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1/etc/apt/sources.list" "$1"/etc/apt/sources.list.d/*' \
    --customize-hook="upload $src /etc/apt/sources.list.d/debian.sources" \
    "$@" "$SUITE" "$out" "$src" >&2
}

# Tag the import as $1; drop the image it replaces when nothing else uses it.
import_image() {
  local name=$1 tarball=$2; shift 2
  local old new
  old=$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)
  new=$(docker import -m "local stand-in for $name (docker/local-base-images.sh)" "$@" "$tarball" "$name")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
}

build_python() {
  local tar="$work/python-rootfs.tar"
  write_ca_hook
  debian_rootfs "$tar" python3.11,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    --customize-hook="$work/ca-hook.sh \"\$1\" $CA_BUNDLE" \
    --customize-hook="chroot \"\$1\" python3 -c 'import platform; print(platform.python_version())' >$work/python-version"
  local pyver; pyver=$(cat "$work/python-version")
  import_image "$PYTHON_IMAGE" "$tar" \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$pyver" \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["python3"]'
}

build_uv() {
  local dl="$work/uv-wheel" root="$work/uv-root"
  mkdir -p "$dl" "$root/io"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform musllinux_1_1_x86_64 --python-version 3.11 --implementation py \
    -d "$dl" "uv==$UV_VERSION" >&2
  local wheels=("$dl"/uv-"$UV_VERSION"-*musllinux*_x86_64.whl)
  [ -f "${wheels[0]}" ] || die "no musllinux x86_64 wheel of uv $UV_VERSION downloaded"
  local whl=${wheels[0]}
  "$PYTHON" - "$whl" "$root" <<'EOF'
import sys, zipfile, os
whl, root = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        name = info.filename
        if ".data/scripts/" in name and os.path.basename(name) in ("uv", "uvx"):
            path = os.path.join(root, os.path.basename(name))
            with z.open(info) as src, open(path, "wb") as dst:
                dst.write(src.read())
            os.chmod(path, 0o755)
EOF
  [ -x "$root/uv" ] || die "uv binary not found in $whl"
  "$root/uv" --version >&2
  local members=(uv io); [ -x "$root/uvx" ] && members+=(uvx)
  tar --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/uv.tar" "${members[@]}"
  import_image "$UV_IMAGE" "$work/uv.tar" \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'WORKDIR /io' \
    --change 'ENTRYPOINT ["/uv"]'
}

build_redis() {
  local tar="$work/redis-rootfs.tar"
  cat >"$work/redis-entrypoint.sh" <<'EOF'
#!/bin/sh
# Entrypoint of the local redis stand-in (docker/local-base-images.sh), after the official image's.
set -e
# a flag or a .conf file first: run redis-server with it
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  # The official image builds redis with protected mode off by default (clients come from other
  # containers); Debian's build has it on. Turn it off unless the command or a config file decides.
  case " $* " in *" --protected-mode "*|*".conf "*) ;; *) set -- "$@" --protected-mode no ;; esac
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    umask 0077
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
EOF
  debian_rootfs "$tar" redis-server,redis-tools \
    --customize-hook="upload $work/redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/docker-entrypoint.sh"' \
    --customize-hook='mkdir -p "$1/data" && chroot "$1" chown redis:redis /data && chmod 0755 "$1/data"'
  import_image "$REDIS_IMAGE" "$tar" \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'VOLUME /data' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["redis-server"]'
}

summary=()
for target in "${targets[@]}"; do
  case "$target" in
    python) name=$PYTHON_IMAGE ;;
    uv) name=$UV_IMAGE ;;
    redis) name=$REDIS_IMAGE ;;
  esac
  if [ "$force" = 0 ] && docker image inspect "$name" >/dev/null 2>&1; then
    log "$name exists: skipped (--force rebuilds it)"
    summary+=("$name: skipped (exists)")
    continue
  fi
  log "building $name ..."
  start=$(date +%s)
  "build_$target"
  took=$(( $(date +%s) - start ))
  size=$(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1 / 1e6}')
  log "built $name in ${took}s ($size)"
  summary+=("$name: built in ${took}s ($size)")
done

printf '%s\n' "${summary[@]}"
