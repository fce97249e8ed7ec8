#!/usr/bin/env bash
# Builds the IPCS images (localhost/ipcs/registry, server, lb, lb-node) FROM
# scratch out of the static release binaries, with the legacy builder and
# without pulling anything. Each image holds its stripped binary, calc where a
# healthcheck needs it, and /etc/nsswitch.conf; lb-node (the LB tier's node)
# also this host's keepalived with the libraries it links. Prints each size.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IPCS_LOG_PREFIX="build-images"

usage() {
    cat <<EOF
Usage: deploy/build-images.sh [--build] [--tag TAG]

Builds the scratch images $IPCS_IMAGE_REPO/{registry,server,lb,lb-node} from
the static binaries in \$IPCS_BIN_DIR (default target/static/$IPCS_TARGET/release);
lb-node also takes $KEEPALIVED and its shared libraries (ldd) from this
host (apt install keepalived; without it lb-node is skipped with a warning).
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
require_binaries ipcs-registry ipcs-server ipcs-lb ipcs-lb-node calc

stage=$(mktemp -d "${TMPDIR:-/tmp}/ipcs-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# image name -> binaries it holds (the first is the entrypoint)
declare -A contents=(
    [registry]="ipcs-registry"
    [server]="ipcs-server calc"
    [lb]="ipcs-lb calc"
    [lb-node]="ipcs-lb-node ipcs-lb calc"
)

# keepalived for the lb-node image: the binary, every library ldd resolves
# (the loader included) at the same path, and an /etc/passwd naming root
# (keepalived's script_user, who runs the calc health check).
add_keepalived() { # ROOTFS
    local root=$1 lib
    mkdir -p "$root/usr/sbin"
    cp "$KEEPALIVED" "$root/usr/sbin/keepalived"
    for lib in $(ldd "$KEEPALIVED" | grep -oE '/[^ ]+'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    printf 'root:x:0:0:root:/:/bin/ipcs-lb-node\nnobody:x:65534:65534:nobody:/:/bin/ipcs-lb-node\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

for image in "${IPCS_IMAGES[@]}"; do
    if [[ $image == lb-node ]] && { ! have ldd || [[ ! -x $KEEPALIVED ]]; }; then
        warn "no $KEEPALIVED (apt install keepalived) or ldd: $IPCS_IMAGE_REPO/lb-node not built (the LB tier, --lbs 2, needs it)"
        continue
    fi
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
    [[ $image == lb-node ]] && add_keepalived "$ctx/rootfs"
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
