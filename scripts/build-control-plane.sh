#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager (Kubernetes 1.20.2) from Debian
# bookworm's `kubernetes` source package, for the project's test control plane.
#
# See ../shared/docs/control-plane.md for the measured facts this follows.
#
# Output: the binaries in
#   ${BOTFLEET_CACHE_DIR:-$HOME/.cache/botfleet}/k8s/<key>/bin/{kube-apiserver,kube-controller-manager}
# where <key> = <Debian source version>-<hash of the recipe and scripts/control-plane/*>.
# The bin directory path is the last line printed on stdout; all progress goes to stderr.
# When the binaries for the key exist, it exits at once (no apt, no network).
#
# Environment:
#   BOTFLEET_CACHE_DIR      cache root (default $HOME/.cache/botfleet)
#   BOTFLEET_K8S_KEEP_WORK  1 = keep the build work dir (source + Go build cache) after success
#
# The built kube-controller-manager reads BOTFLEET_GC_DISCOVERY_RESYNC_PERIOD (Go duration,
# default 5s) for the garbage collector's discovery resync (upstream: fixed 30s); see
# scripts/control-plane/patches/.
set -euo pipefail

# ---- recipe (bump RECIPE_REVISION whenever a build step below changes meaning) ----------
RECIPE_REVISION=1
K8S_SRC_PACKAGE=kubernetes
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
K8S_VERSION=v1.20.2                      # what the tarball really contains
REFLECT2_PACKAGE=golang-github-modern-go-reflect2-dev
REFLECT2_DEB_VERSION=1.0.2-2
GO_PACKAGE=golang-1.19-go
GO_ROOT=/usr/lib/go-1.19
BUILD_TARGETS="./cmd/kube-apiserver ./cmd/kube-controller-manager"
BINARIES="kube-apiserver kube-controller-manager"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPERS="$SCRIPT_DIR/control-plane"
CACHE_ROOT="${BOTFLEET_CACHE_DIR:-$HOME/.cache/botfleet}/k8s"

die() { echo "build-control-plane: ERROR: $*" >&2; exit 1; }
log() { echo "build-control-plane: $*" >&2; }

[[ -d "$HELPERS" ]] || die "helper directory $HELPERS is missing"

# ---- cache key: source version + hash of recipe and helper files (patches included) -----
recipe_hash() {
    {
        printf 'recipe=%s src=%s=%s ver=%s reflect2=%s go=%s targets=%s\n' \
            "$RECIPE_REVISION" "$K8S_SRC_PACKAGE" "$K8S_DEB_VERSION" "$K8S_VERSION" \
            "$REFLECT2_DEB_VERSION" "$GO_PACKAGE" "$BUILD_TARGETS"
        (cd "$HELPERS" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-12
}
KEY="${K8S_DEB_VERSION}-$(recipe_hash)"
OUT_DIR="$CACHE_ROOT/$KEY"
BIN_DIR="$OUT_DIR/bin"

have_binaries() {
    local b
    for b in $BINARIES; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

# Fast path: nothing to do.
if have_binaries; then
    echo "$BIN_DIR"
    exit 0
fi

# ---- slow path: serialize concurrent builds ----------------------------------------------
mkdir -p "$CACHE_ROOT"
command -v flock >/dev/null || die "flock (util-linux) is required"
exec 9>"$CACHE_ROOT/.build.lock"
log "waiting for the build lock $CACHE_ROOT/.build.lock ..."
flock 9
if have_binaries; then      # another process built it meanwhile
    echo "$BIN_DIR"
    exit 0
fi

T0=$SECONDS
WORK="$CACHE_ROOT/build/$KEY"
DL="$CACHE_ROOT/downloads/$K8S_DEB_VERSION"
mkdir -p "$WORK" "$DL"
BUILD_LOG="$WORK/build.log"
log "building Kubernetes $K8S_VERSION (Debian $K8S_DEB_VERSION), key $KEY"
log "work dir $WORK (log of long steps: $BUILD_LOG)"

# Run a long command with its output in the build log; on failure show the log's tail.
run_logged() {
    local what=$1; shift
    log "$what ..."
    echo "=== $what: $*" >>"$BUILD_LOG"
    if ! "$@" >>"$BUILD_LOG" 2>&1; then
        echo "----- last 40 lines of $BUILD_LOG -----" >&2
        tail -n 40 "$BUILD_LOG" >&2
        die "$what failed (full log: $BUILD_LOG)"
    fi
}

# ---- root / apt helpers -------------------------------------------------------------------
SUDO=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() {
    if [[ $APT_UPDATED == 0 ]]; then
        run_logged "apt-get update" "${SUDO[@]}" apt-get update
        APT_UPDATED=1
    fi
}
is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# ---- 1. deb-src entry + build dependencies (one apt-get update for both) ------------------
APT_NOSANDBOX=(-o APT::Sandbox::User=root)
DEB_SRC_FILE=/etc/apt/sources.list.d/botfleet-deb-src.sources
src_listed() {
    apt-cache showsrc "$K8S_SRC_PACKAGE" 2>/dev/null | grep -qx "Version: $K8S_DEB_VERSION"
}
add_deb_src() {
    log "adding deb-src entries in $DEB_SRC_FILE"
    local tmp_src
    tmp_src=$(mktemp)
    python3 "$HELPERS/deb_src_sources.py" >"$tmp_src" \
        || { rm -f "$tmp_src"; die "could not derive deb-src entries from /etc/apt"; }
    "${SUDO[@]}" install -m 0644 "$tmp_src" "$DEB_SRC_FILE"
    rm -f "$tmp_src"
}
need=()
for p in "$GO_PACKAGE" dpkg-dev openssl patch xz-utils; do
    is_installed "$p" || need+=("$p")
done
command -v python3 >/dev/null || need+=(python3)
need_src=0
if [[ ! -f "$DL/.complete" ]] && ! src_listed; then
    need_src=1
    if [[ ! -f "$DEB_SRC_FILE" ]] && command -v python3 >/dev/null; then add_deb_src; fi
fi
if ((${#need[@]})) || ((need_src)); then apt_update; fi
if ((${#need[@]})); then
    run_logged "apt-get install ${need[*]}" "${SUDO[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi
GO="$GO_ROOT/bin/go"
[[ -x "$GO" ]] || die "$GO not found after installing $GO_PACKAGE"
"$GO" version | grep -q 'go1\.19' || die "unexpected Go: $("$GO" version)"
command -v dpkg-source >/dev/null || die "dpkg-source not found (dpkg-dev)"

# ---- 2. source package (apt-get source --download-only) + reflect2 1.0.2 -------------------
if [[ ! -f "$DL/.complete" ]]; then
    if ! src_listed; then
        [[ -f "$DEB_SRC_FILE" ]] || add_deb_src
        APT_UPDATED=0
        apt_update
        src_listed || die "source package $K8S_SRC_PACKAGE=$K8S_DEB_VERSION is not available from the configured deb-src entries ($DEB_SRC_FILE); versions seen: $(apt-cache showsrc "$K8S_SRC_PACKAGE" 2>/dev/null | sed -n 's/^Version: //p' | tr '\n' ' ')"
    fi
    rm -f "$DL"/*
    (cd "$DL" && run_logged "apt-get source --download-only $K8S_SRC_PACKAGE=$K8S_DEB_VERSION" \
        apt-get "${APT_NOSANDBOX[@]}" source --download-only "$K8S_SRC_PACKAGE=$K8S_DEB_VERSION")
    (cd "$DL" && run_logged "apt-get download $REFLECT2_PACKAGE=$REFLECT2_DEB_VERSION" \
        apt-get "${APT_NOSANDBOX[@]}" download "$REFLECT2_PACKAGE=$REFLECT2_DEB_VERSION")
    touch "$DL/.complete"
fi
DSC=$(ls "$DL"/"${K8S_SRC_PACKAGE}"_*.dsc 2>/dev/null | head -n1)
REFLECT2_DEB=$(ls "$DL"/"${REFLECT2_PACKAGE}"_*.deb 2>/dev/null | head -n1)
[[ -n "$DSC" && -f "$DSC" ]] || die "no .dsc in $DL (remove $DL and retry)"
[[ -n "$REFLECT2_DEB" && -f "$REFLECT2_DEB" ]] || die "no $REFLECT2_PACKAGE .deb in $DL (remove $DL and retry)"

# ---- 3. prepared source tree (extract + three fixes + optional patches) -------------------
SRC="$WORK/src"
export GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off CGO_ENABLED=0 GOTOOLCHAIN=local \
       GOCACHE="$WORK/gocache" GOPATH="$WORK/gopath" GO111MODULE=on GOENV=off
export PATH="$GO_ROOT/bin:$PATH"

if [[ ! -f "$WORK/.prepared" ]]; then
    rm -rf "$SRC" "$WORK/gopath" "$WORK/tools" "$WORK/reflect2"
    run_logged "dpkg-source -x $(basename "$DSC")" dpkg-source -x "$DSC" "$SRC"
    [[ -f "$SRC/go.mod" && -d "$SRC/vendor" ]] || die "extracted tree $SRC has no go.mod/vendor"

    # Fix 1: vendor/modules.txt layout for Go >= 1.17.
    cp "$SRC/vendor/modules.txt" "$WORK/modules.txt.orig"
    run_logged "fix vendor/modules.txt" python3 "$HELPERS/fix_modules_txt.py" \
        "$WORK/modules.txt.orig" "$SRC/vendor/modules.txt"

    # Fix 3: reflect2 1.0.1 -> 1.0.2 (1.0.1 segfaults with Go >= 1.18).
    R2SRC="$WORK/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2"
    R2DST="$SRC/vendor/github.com/modern-go/reflect2"
    run_logged "extract $(basename "$REFLECT2_DEB")" dpkg-deb -x "$REFLECT2_DEB" "$WORK/reflect2"
    [[ -f "$R2SRC/reflect2.go" && -d "$R2DST" ]] || die "reflect2 sources not where expected ($R2SRC -> $R2DST)"
    rm -f "$R2DST"/*.go "$R2DST"/*.s
    cp "$R2SRC"/*.go "$R2SRC"/*.s "$R2DST"/
    ls "$R2DST"/go_above_118.go >/dev/null 2>&1 || die "reflect2 1.0.2 files not installed in $R2DST"
    log "replaced vendored reflect2 with $REFLECT2_DEB_VERSION"

    # Optional patches (GC discovery resync period from env, ...).
    shopt -s nullglob
    for p in "$HELPERS"/patches/*.patch; do
        run_logged "apply $(basename "$p")" patch -d "$SRC" -p1 --forward --batch -i "$p"
    done
    shopt -u nullglob

    (cd "$SRC" && run_logged "go list (vendor consistency)" "$GO" list $BUILD_TARGETS)

    # Fix 2: pkg/generated/openapi/zz_generated.openapi.go (generated by upstream's make).
    mkdir -p "$WORK/tools" "$WORK/gopath/src/k8s.io"
    (cd "$SRC" && run_logged "build openapi-gen" "$GO" build -trimpath -o "$WORK/tools/openapi-gen" \
        ./vendor/k8s.io/kube-openapi/cmd/openapi-gen)
    ln -sfn "$SRC" "$WORK/gopath/src/k8s.io/kubernetes"
    OPENAPI_INPUTS=$(python3 "$HELPERS/openapi_dirs.py" "$SRC") || die "openapi_dirs.py failed"
    (cd "$WORK/gopath/src/k8s.io/kubernetes" && run_logged "openapi-gen (GOPATH mode)" \
        env GO111MODULE=off GOFLAGS= "$WORK/tools/openapi-gen" --logtostderr \
            -i "$OPENAPI_INPUTS" \
            -p k8s.io/kubernetes/pkg/generated/openapi \
            -O zz_generated.openapi \
            -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
            -r "$WORK/openapi-violations.report")
    [[ -s "$SRC/pkg/generated/openapi/zz_generated.openapi.go" ]] \
        || die "openapi-gen did not write pkg/generated/openapi/zz_generated.openapi.go"
    if ! diff -q "$WORK/openapi-violations.report" "$SRC/api/api-rules/violation_exceptions.list" >/dev/null; then
        log "WARNING: openapi-gen API-rule report differs from api/api-rules/violation_exceptions.list"
    fi
    touch "$WORK/.prepared"
else
    log "reusing prepared source tree $SRC"
fi

# ---- 4. build -----------------------------------------------------------------------------
BUILD_DATE=$(date -u -d "@$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Timestamp)" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
MAJOR=${K8S_VERSION#v}; MINOR=${MAJOR#*.}; MAJOR=${MAJOR%%.*}; MINOR=${MINOR%%.*}
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$MINOR"
    LDFLAGS+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$BUILD_DATE"
done
mkdir -p "$WORK/out"
(cd "$SRC" && run_logged "go build $BUILD_TARGETS (several minutes)" \
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$WORK/out/" $BUILD_TARGETS)
for b in $BINARIES; do
    [[ -x "$WORK/out/$b" ]] || die "go build produced no $WORK/out/$b"
    "$WORK/out/$b" --version 2>&1 | grep -q "$K8S_VERSION" \
        || die "$b --version does not report $K8S_VERSION: $("$WORK/out/$b" --version 2>&1 | head -n1)"
done

# ---- 5. install atomically into the cache -------------------------------------------------
STAGE="$OUT_DIR/bin.tmp.$$"
rm -rf "$STAGE"
mkdir -p "$STAGE"
for b in $BINARIES; do cp "$WORK/out/$b" "$STAGE/$b"; done
{
    echo "kubernetes $K8S_VERSION from Debian source $K8S_SRC_PACKAGE=$K8S_DEB_VERSION"
    echo "key $KEY (recipe revision $RECIPE_REVISION)"
    echo "go: $("$GO" version)"
    echo "reflect2: $REFLECT2_PACKAGE=$REFLECT2_DEB_VERSION"
    echo "patches: $(cd "$HELPERS" && ls patches 2>/dev/null | tr '\n' ' ')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - T0)) s"
} >"$OUT_DIR/BUILDINFO"
cp "$BUILD_LOG" "$OUT_DIR/build.log"
rm -rf "$BIN_DIR"
mv "$STAGE" "$BIN_DIR"
have_binaries || die "installation into $BIN_DIR failed"

if [[ "${BOTFLEET_K8S_KEEP_WORK:-0}" != 1 ]]; then
    log "removing work dir $WORK (source tree and Go build cache; downloads stay in $DL)"
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
fi
log "done in $((SECONDS - T0)) s"
echo "$BIN_DIR"
