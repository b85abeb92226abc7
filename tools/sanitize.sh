#!/usr/bin/env bash
# Build a sanitized copy of nnlite OUT OF TREE and run the kernel tests under it.
#
#   tools/sanitize.sh [extra pytest args]
#
# 1. copies the working tree (tracked + untracked sources, no build products) to $NNLITE_SAN_DIR
#    (default /tmp/nnlite-asan);
# 2. builds the extensions in place THERE with NNLITE_SANITIZE=1 (-fsanitize=address,undefined,
#    -O0 -g, -fno-sanitize-recover=undefined): the main checkout's in-place build and the installed
#    (editable) package are not touched;
# 3. runs the kernel tests with PYTHONPATH pointing at the copy, libasan preloaded into the
#    (uninstrumented) Python, and every report fatal (abort_on_error / halt_on_error).
#
# Exit status: pytest's (non-zero on any failing test or sanitizer report).
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
DST="${NNLITE_SAN_DIR:-/tmp/nnlite-asan}"
CC_BIN="${CC:-gcc}"

LIBASAN="$("$CC_BIN" -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize.sh: $CC_BIN has no libasan.so ($LIBASAN); install the compiler's ASan runtime" >&2
    exit 2
fi

echo "sanitize.sh: copying $SRC -> $DST"
# The copy mirrors the checkout's sources. Its sanitized build products (nnlite/*.so, build/)
# are kept between runs: setuptools rebuilds an extension only when one of its sources is newer.
mkdir -p "$DST"
find "$DST" -mindepth 1 -maxdepth 1 ! -name build ! -name nnlite -exec rm -rf {} +
[ -d "$DST/nnlite" ] && find "$DST/nnlite" -mindepth 1 ! -name '*.so' -delete 2>/dev/null || true
tar -C "$SRC" -cf - \
    --exclude './.git' --exclude './build' --exclude '*.so' --exclude '*.egg-info' \
    --exclude '__pycache__' --exclude './.hypothesis' --exclude './.pytest_cache' . \
    | tar -C "$DST" -xf -

echo "sanitize.sh: building with NNLITE_SANITIZE=1 in $DST"
(cd "$DST" && NNLITE_SANITIZE=1 CC="$CC_BIN" python setup.py -q build_ext --inplace \
    >"$DST/build.log" 2>&1) || { tail -50 "$DST/build.log"; exit 1; }

TESTS=(tests/test_im2col.py tests/test_gemm.py tests/test_gemm_split.py tests/test_conv2d.py
       tests/test_conv_transpose2d.py tests/test_pad.py tests/test_pool_max.py
       tests/test_pool_avg.py tests/test_pool_geometry.py tests/test_pool_unpool.py
       tests/test_adaptive_pool.py tests/test_spp.py tests/test_roi_pool.py
       tests/test_roi_align.py tests/test_concurrency.py tests/test_numerics.py
       tests/test_untrusted_files.py tests/test_inference.py tests/test_onnx_import.py
       tests/test_conv_algorithms.py)
for f in "$DST"/tests/test_fuzz_*.py; do [ -e "$f" ] && TESTS+=("tests/$(basename "$f")"); done
present=()
for t in "${TESTS[@]}"; do [ -e "$DST/$t" ] && present+=("$t"); done

# PyTorch is not built for the ASan runtime (it aborts inside torch under LD_PRELOAD): hide it,
# so the optional torch parity tests skip (pytest.importorskip) and only nnlite is exercised
mkdir -p "$DST/.san_shims/torch"
echo 'raise ImportError("torch is hidden in the sanitizer run (tools/sanitize.sh)")' \
    > "$DST/.san_shims/torch/__init__.py"

cd "$DST"
export PYTHONPATH="$DST:$DST/.san_shims${PYTHONPATH:+:$PYTHONPATH}"
# Reports go to files (pytest captures fd 2, and an aborting process loses the capture).
# allocator_may_return_null=1: an impossible allocation returns NULL (numpy then raises
# MemoryError, as with glibc) instead of being reported as allocation-size-too-big.
LOGS="$DST/sanitizer-reports"
rm -rf "$LOGS" && mkdir -p "$LOGS"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:allocator_may_return_null=1:log_path=$LOGS/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOGS/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export NNLITE_SANITIZED=1
# the copy, not the editable install, must be the nnlite under test
LD_PRELOAD="$LIBASAN" python - <<PY
import nnlite, nnlite._im2col as m
assert nnlite.__file__.startswith("$DST/"), nnlite.__file__
assert m.__file__.startswith("$DST/"), m.__file__
print("sanitize.sh: testing", nnlite.__file__, "backends", nnlite.available_backends())
PY
echo "sanitize.sh: pytest ${present[*]} $*"
status=0
LD_PRELOAD="$LIBASAN" python -m pytest -q -p no:cacheprovider -o addopts="" -m "not torch" \
    "${present[@]}" "$@" || status=$?
# report files also hold harmless "failed to allocate" warnings (impossible sizes -> NULL)
if compgen -G "$LOGS/*" > /dev/null && grep -lE "ERROR: |runtime error:" "$LOGS"/* > /dev/null
then
    echo "sanitize.sh: SANITIZER REPORTS:"
    cat "$LOGS"/*
    [ "$status" -eq 0 ] && status=1
else
    echo "sanitize.sh: no AddressSanitizer/UndefinedBehaviorSanitizer reports"
fi
exit "$status"
