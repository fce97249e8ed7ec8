#!/usr/bin/env bash
# Builds the IPCS images (localhost/ipcs/registry, server, lb) FROM scratch out
# of the static release binaries, with the legacy builder and without pulling
# anything. Each image holds its stripped binary, calc where a healthcheck
# needs it, and /etc/nsswitch.conf. Prints each image's size.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IPCS_LOG_PREFIX="build-images"

usage() {
    cat <<EOF
Usage: deploy/build-images.sh [--build] [--tag TAG]

Builds the scratch images $IPCS_IMAGE_REPO/{registry,server,lb} from the
static binaries in \$IPCS_BIN_DIR (default target/static/$IPCS_TARGET/release).
Nothing is pulled; the legacy builder is used (DOCKER_BUILDKIT=0).

Options:
  --build      build the static binaries first (cargo build --release, crt-static)
  --tag TAG    image tag (default: latest, which compose.yaml uses)
  -h, --help   this help
EOF
}

build=0
tag=latest
while (($#)); do
    case $1 in
    --build) build=1 ;;
    --tag)
        (($# >= 2)) || die "--tag needs a value"
        tag=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

docker_reachable || die "the Docker engine is not reachable (docker info fails)"
((build)) && build_binaries
require_binaries ipcs-registry ipcs-server ipcs-lb calc

stage=$(mktemp -d "${TMPDIR:-/tmp}/ipcs-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# image name -> binaries it holds (the first is the entrypoint)
declare -A contents=(
    [registry]="ipcs-registry"
    [server]="ipcs-server calc"
    [lb]="ipcs-lb calc"
)

for image in "${IPCS_IMAGES[@]}"; do
    # The image's whole file tree, copied in one layer (one COPY: each step
    # of the legacy builder is a commit, slow on overlay-on-FUSE storage).
    ctx=$stage/$image
    mkdir -p "$ctx/rootfs/bin"
    cp -r "$IPCS_REPO/deploy/docker/etc" "$ctx/rootfs/etc"
    for bin in ${contents[$image]}; do
        # Debug info stays in the host's copy (profile.release has debug = 1);
        # the image gets the stripped binary.
        if have strip; then
            strip -o "$ctx/rootfs/bin/$bin" "$IPCS_BIN_DIR/$bin"
        else
            cp "$IPCS_BIN_DIR/$bin" "$ctx/rootfs/bin/$bin"
        fi
    done
    # The legacy builder warns that it is deprecated on every run: its output
    # is shown only when the build fails.
    if ! DOCKER_BUILDKIT=0 docker build --quiet --pull=false \
        -t "$IPCS_IMAGE_REPO/$image:$tag" -f "$IPCS_REPO/deploy/docker/$image.Dockerfile" "$ctx" \
        >"$stage/build.log" 2>&1; then
        cat "$stage/build.log" >&2
        die "docker build of $IPCS_IMAGE_REPO/$image failed"
    fi
    size=$(docker image inspect -f '{{.Size}}' "$IPCS_IMAGE_REPO/$image:$tag")
    say "$IPCS_IMAGE_REPO/$image:$tag built, $((size / 1024)) KiB"
done
have strip || warn "strip not found (binutils): images hold unstripped binaries"
