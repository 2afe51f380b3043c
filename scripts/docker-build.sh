#!/usr/bin/env bash
# Builds the Docker image ringcache:latest (and ringcache:<git short hash>) FROM scratch:
# the release binaries plus the shared libraries ldd lists for them, nothing else. No
# base image is pulled, so it works on a machine without registry access.
#
#   scripts/docker-build.sh                # cargo build --release --bins, then the image
#   scripts/docker-build.sh --skip-cargo   # reuse the binaries already built
#
# Environment: CARGO_TARGET_DIR (where the release binaries are; default ./target),
# RINGCACHE_IMAGE (image name; default ringcache), RINGCACHE_SKIP_CARGO=1 (as
# --skip-cargo). Needs docker, ldd, tar (GNU), git; strip is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "docker-build: $*" >&2; exit 1; }
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

skip_cargo=${RINGCACHE_SKIP_CARGO:-0}
for arg in "$@"; do
    case $arg in
        --skip-cargo) skip_cargo=1 ;;
        -h|--help) usage 0 ;;
        *) echo "docker-build: unknown argument $arg" >&2; usage 2 ;;
    esac
done

command -v docker >/dev/null || die "docker is not installed"
command -v ldd >/dev/null || die "ldd is not installed (glibc's, to find the shared libraries)"
image=${RINGCACHE_IMAGE:-ringcache}
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

if [[ $skip_cargo != 1 ]]; then
    echo "==> cargo build --release --bins (target dir $target)"
    cargo build --release --bins --locked
fi
for b in ringcached ringctl; do
    [[ -x $bin/$b ]] || die "$bin/$b is missing: build it (cargo build --release --bins) or drop --skip-cargo"
done

rev=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
    rev=$rev-dirty
fi
# Every file in the image gets the commit's time, so the tarball depends only on the
# binaries and libraries, not on when it was assembled.
epoch=$(git log -1 --format=%ct)

ctx=$target/docker-context
rm -rf "$ctx"
mkdir -p "$ctx/rootfs"
rootfs=$ctx/rootfs

echo "==> assembling the root filesystem in $rootfs"
install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/etc/ringcache"
install -d -m 1777 "$rootfs/tmp"
# The data directory (the compose volumes are created from it, copying its mode): 1777
# so the node may run as any uid, e.g. the uid that owns the mounted key files.
install -d -m 1777 "$rootfs/var/lib/ringcache"
for b in ringcached ringctl; do
    install -m 0755 "$bin/$b" "$rootfs/usr/local/bin/$b"
    # Debug line tables (profile.release) are most of the size; symbols stay, so a
    # panic's backtrace still names functions.
    if command -v strip >/dev/null; then
        strip --strip-debug "$rootfs/usr/local/bin/$b"
    fi
done

# Shared libraries: every absolute path ldd prints for either binary (the loader itself
# included), copied (symlinks resolved) to the same path in the image.
libs=$(for b in ringcached ringctl; do
    out=$(ldd "$bin/$b") || die "ldd $bin/$b failed (not a dynamic executable for this machine?)"
    if grep -q 'not found' <<<"$out"; then
        die "ldd $bin/$b: a library is missing: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$out"
done | sort -u)
[[ -n $libs ]] || die "ldd listed no libraries; a static binary needs no rootfs libs, but this script expects glibc ones"
for lib in $libs; do
    install -d -m 0755 "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    chmod 0755 "$rootfs$lib"
done

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/nonexistent
ringcache:x:10001:10001:ringcache:/var/lib/ringcache:/nonexistent
nobody:x:65534:65534:nobody:/nonexistent:/nonexistent
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
ringcache:x:10001:
nogroup:x:65534:
EOF
# glibc's resolver: /etc/hosts first (docker writes it), then DNS (compose's service
# names, for seeds such as ringcache-node-1:7700).
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"

tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$rootfs" -cf "$ctx/rootfs.tar" .
cp docker/Dockerfile "$ctx/Dockerfile"
echo "    $(echo "$libs" | wc -l) libraries: $(echo "$libs" | xargs -n1 basename | paste -sd' ')"
echo "    rootfs.tar $(du -h "$ctx/rootfs.tar" | cut -f1), sha256 $(sha256sum "$ctx/rootfs.tar" | cut -c1-16)"

# The legacy builder when BuildKit's buildx is not installed (docker build then fails
# otherwise on recent clients); FROM scratch needs nothing BuildKit adds.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
echo "==> docker build -t $image:latest -t $image:$rev"
# (Quiet: the legacy builder's deprecation notice on stderr is shown only on failure.)
if ! out=$(docker build --quiet --build-arg "REVISION=$rev" -t "$image:latest" -t "$image:$rev" "$ctx" 2>&1); then
    echo "$out" >&2
    die "docker build failed"
fi

# The image must run: the loader finds its libraries and both binaries start.
docker run --rm "$image:latest" --version >/dev/null \
    || die "the image does not start ringcached (see the error above)"
docker run --rm --entrypoint ringctl "$image:latest" --version >/dev/null \
    || die "the image does not start ringctl (see the error above)"

size=$(docker image inspect -f '{{.Size}}' "$image:latest")
echo "==> built $image:latest and $image:$rev ($((size / 1024 / 1024)) MiB): $(docker run --rm "$image:latest" --version)"
