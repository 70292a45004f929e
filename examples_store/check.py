#!/usr/bin/env python3
"""Check the bundled corpora: every line parses, ids are unique across all corpora,
labels, subcategories and urgencies exist in the corpus's taxonomy, `lang` is an
ISO 639-1 code that fits the text's script, the flags of the test files are
consistent, and the counts in README.md match the data.

Usage: python3 examples_store/check.py [examples_store_dir]

Stdlib only (Python 3.11+ for tomllib). Prints a summary; exits 1 on any problem.
"""

from __future__ import annotations

import collections
import difflib
import json
import re
import sys
import tomllib
from pathlib import Path

# ISO 639-1 (two-letter) language codes.
ISO_639_1 = set(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv
    cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
    hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la
    lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj
    om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv
    sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split()
)

# English names, for the README's "Languages:" lines.
LANG_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "pt": "Portuguese",
    "it": "Italian", "nl": "Dutch", "pl": "Polish", "sv": "Swedish", "tr": "Turkish",
    "ru": "Russian", "ja": "Japanese", "zh": "Chinese", "da": "Danish", "fi": "Finnish",
    "cs": "Czech", "no": "Norwegian", "nb": "Norwegian Bokmål", "ko": "Korean", "uk": "Ukrainian",
}

# Fields per kind of file: required, optional. A file's kind comes from its name.
FIELDS = {
    "examples.jsonl": ({"id", "text", "label", "urgency", "lang", "rationale"}, {"secondary"}),
    "test.jsonl": ({"id", "text", "label", "urgency", "lang"}, {"secondary", "edge", "is_oos"}),
    "test-multilingual.jsonl": ({"id", "text", "label", "urgency", "lang"}, {"in_corpus"}),
}
# The id prefix per (corpus, file).
ID_PREFIX = {
    ("saas-support", "examples.jsonl"): "saas-",
    ("saas-support", "test.jsonl"): "saas-test-",
    ("saas-support", "test-multilingual.jsonl"): "saas-ml-",
    ("support-intents", "examples.jsonl"): "intent-",
    ("shop-multilingual", "examples.jsonl"): "shop-",
    ("shop-multilingual", "test.jsonl"): "shop-test-",
}
FLAGS = ("edge", "secondary", "is_oos", "in_corpus")
# Non-identical test texts this similar to an indexed example are reported (not failed).
NEAR_DUPLICATE = 0.85

CJK = re.compile(r"[\u4e00-\u9fff]")
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af]")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.ids: dict[str, str] = {}  # id -> where it was first seen
        self.rows: dict[tuple[str, str], list[dict]] = {}  # (corpus, file) -> rows

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    # --- taxonomy -------------------------------------------------------------------------

    def load_taxonomy(self, corpus: Path) -> dict | None:
        path = corpus / "taxonomy.toml"
        try:
            t = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            self.problem(str(path), f"does not parse: {e}")
            return None
        cats = {c["name"]: {s["name"] for s in c.get("subcategories", [])} for c in t.get("categories", [])}
        oos = t.get("out_of_scope_labels", [])
        if not isinstance(oos, list) or not all(isinstance(x, str) for x in oos):
            self.problem(str(path), "`out_of_scope_labels` must be a list of strings")
            oos = []
        for label in oos:
            if label in cats:
                self.problem(str(path), f"out-of-scope label {label!r} is also a category")
        return {
            "categories": cats,
            "oos": set(oos),
            "urgency": [u["name"] for u in t.get("urgency", [])],
        }

    # --- rows -----------------------------------------------------------------------------

    def check_file(self, corpus: str, path: Path, tax: dict) -> list[dict]:
        kind = path.name
        required, optional = FIELDS[kind]
        prefix = ID_PREFIX.get((corpus, kind))
        rows: list[dict] = []
        texts: dict[str, str] = {}
        last_num = 0
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines[-1] != "":
            self.problem(f"{corpus}/{kind}", "the last line does not end with a newline")
        for n, line in enumerate(lines, 1):
            where = f"{corpus}/{kind}:{n}"
            if not line.strip():
                if n != len(lines):
                    self.problem(where, "blank line")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                self.problem(where, f"not JSON: {e}")
                continue
            if not isinstance(row, dict):
                self.problem(where, "not a JSON object")
                continue
            keys = set(row)
            has_subcats = any(tax["categories"].values())
            req = required | ({"subcategory"} if has_subcats and row.get("label") not in tax["oos"] else set())
            for k in sorted(req - keys):
                self.problem(where, f"missing field {k!r}")
            for k in sorted(keys - req - optional - {"subcategory"}):
                self.problem(where, f"unexpected field {k!r}")
            for k in required:
                if k in row and (not isinstance(row[k], str) or not row[k].strip()):
                    self.problem(where, f"field {k!r} must be a non-empty string")
            rid = row.get("id")
            if isinstance(rid, str):
                where = f"{corpus}/{kind}:{n} ({rid})"
                if rid in self.ids:
                    self.problem(where, f"duplicate id, first seen at {self.ids[rid]}")
                else:
                    self.ids[rid] = f"{corpus}/{kind}:{n}"
                m = re.fullmatch(re.escape(prefix or "") + r"(\d{4,})", rid) if prefix else None
                if prefix and not m:
                    self.problem(where, f"id does not look like {prefix}NNNN")
                elif m:
                    num = int(m.group(1))
                    if num <= last_num:
                        self.problem(where, "ids are not ascending (append new rows after the highest id)")
                    last_num = num
            self.check_values(where, row, tax, kind)
            text = row.get("text")
            if isinstance(text, str):
                if text != text.strip():
                    self.problem(where, "text has leading or trailing whitespace")
                key = normalise(text)
                if key in texts:
                    self.problem(where, f"same text as {texts[key]}")
                texts[key] = rid if isinstance(rid, str) else f"line {n}"
                lang = row.get("lang")
                if isinstance(lang, str):
                    msg = script_mismatch(lang, text)
                    if msg:
                        self.problem(where, msg)
            rows.append(row)
        return rows

    def check_values(self, where: str, row: dict, tax: dict, kind: str) -> None:
        label = row.get("label")
        cats, oos = tax["categories"], tax["oos"]
        if isinstance(label, str) and label not in cats and label not in oos:
            self.problem(where, f"label {label!r} is not in the taxonomy")
        sub = row.get("subcategory")
        if sub is not None:
            if label in oos or not cats.get(label):
                self.problem(where, f"subcategory {sub!r} given but {label!r} has no subcategories")
            elif sub not in cats[label]:
                self.problem(where, f"subcategory {sub!r} is not under {label!r}")
        urgency = row.get("urgency")
        if isinstance(urgency, str) and urgency not in tax["urgency"]:
            self.problem(where, f"urgency {urgency!r} is not in the taxonomy")
        lang = row.get("lang")
        if isinstance(lang, str) and lang not in ISO_639_1:
            self.problem(where, f"lang {lang!r} is not an ISO 639-1 code")
        if label in oos and urgency != (tax["urgency"] or [None])[0]:
            self.problem(where, f"out-of-scope rows have the lowest urgency, not {urgency!r}")
        # Optional flags.
        for flag in ("edge", "in_corpus"):
            if flag in row and row[flag] is not True:
                self.problem(where, f"{flag!r} is either true or absent")
        if "is_oos" in row and row["is_oos"] is not True:
            self.problem(where, "'is_oos' is either true or absent")
        if (row.get("is_oos") is True) != (label in oos) and "is_oos" in FIELDS[kind][1]:
            self.problem(where, "'is_oos' must be true exactly when the label is out of scope")
        if "secondary" in row:
            sec = row["secondary"]
            if not isinstance(sec, list) or not sec or not all(isinstance(s, str) for s in sec):
                self.problem(where, "'secondary' must be a non-empty list of labels")
            else:
                for s in sec:
                    if s not in cats:
                        self.problem(where, f"secondary label {s!r} is not a category")
                    if s == label:
                        self.problem(where, f"secondary label {s!r} repeats the primary label")
                if len(set(sec)) != len(sec):
                    self.problem(where, "'secondary' repeats a label")

    # --- cross-file -----------------------------------------------------------------------

    def check_against_corpus(self, corpus: str) -> None:
        examples = self.rows.get((corpus, "examples.jsonl"), [])
        by_text = {normalise(r["text"]): r for r in examples if isinstance(r.get("text"), str)}
        for kind in ("test.jsonl", "test-multilingual.jsonl"):
            for row in self.rows.get((corpus, kind), []):
                text = row.get("text")
                if not isinstance(text, str):
                    continue
                where = f"{corpus}/{kind} ({row.get('id')})"
                hit = by_text.get(normalise(text))
                if row.get("in_corpus") is True:
                    if hit is None or hit["text"] != text:
                        self.problem(where, "marked in_corpus but no indexed example has this exact text")
                    else:
                        for k in ("label", "urgency", "lang"):
                            if hit.get(k) != row.get(k):
                                self.problem(where, f"in_corpus row's {k} differs from {hit['id']}")
                    continue
                if hit is not None:
                    self.problem(where, f"same text as indexed example {hit['id']} (held-out rows must be new)")
                    continue
                best, best_id = 0.0, None
                for ex in examples:
                    sm = difflib.SequenceMatcher(None, normalise(text), normalise(ex["text"]), autojunk=False)
                    if sm.real_quick_ratio() < NEAR_DUPLICATE or sm.quick_ratio() < NEAR_DUPLICATE:
                        continue
                    r = sm.ratio()
                    if r > best:
                        best, best_id = r, ex["id"]
                if best >= NEAR_DUPLICATE:
                    self.warnings.append(f"{where}: {best:.2f} similar to indexed example {best_id}")
        # Every non-English example of the corpus should be in the multilingual test file.
        ml = self.rows.get((corpus, "test-multilingual.jsonl"))
        if ml is not None:
            copied = {normalise(r["text"]) for r in ml if r.get("in_corpus") is True}
            for ex in examples:
                if ex.get("lang") != "en" and normalise(ex["text"]) not in copied:
                    self.problem(f"{corpus}/test-multilingual.jsonl",
                                 f"non-English example {ex['id']} is not copied (in_corpus)")

    # --- README ---------------------------------------------------------------------------

    def check_readme(self, taxes: dict[str, dict]) -> None:
        path = self.root / "README.md"
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except OSError as e:
            self.problem(str(path), f"cannot read: {e}")
            return
        sections: dict[tuple[str, str], list[str]] = {}
        current = None
        for line in lines:
            m = re.match(r"#{3,4} `([\w.-]+)/([\w.-]*)`", line)
            if m:
                current = (m.group(1), m.group(2) or "examples.jsonl")
                sections[current] = []
            elif line.startswith("#"):
                current = None
            elif current:
                sections[current].append(line)
        for key, rows in self.rows.items():
            if key not in sections:
                self.problem("README.md", f"no section for `{key[0]}/{key[1]}`")
                continue
            self.check_readme_section(key, sections[key], rows, taxes[key[0]])

    def check_readme_section(self, key, text: list[str], rows: list[dict], tax: dict) -> None:
        where = f"README.md `{key[0]}/{key[1]}`"
        urg = tax["urgency"]
        # Label table.
        table = [ln for ln in text if ln.startswith("|")]
        if not table:
            self.problem(where, "no count table")
        else:
            header = cells(table[0])
            with_sub = len(header) > 1 and header[1] == "Subcategory"
            ncols = 2 if with_sub else 1
            if header[ncols + 1:] != urg:
                self.problem(where, f"table columns {header[ncols + 1:]} are not the urgency levels {urg}")
            stated: dict[tuple, list[int]] = {}
            for ln in table[2:]:
                c = cells(ln)
                name = c[0]
                try:
                    nums = [int(x) for x in c[ncols:]]
                except ValueError:
                    self.problem(where, f"row does not hold numbers: {ln}")
                    continue
                if name == "All":
                    stated[("All",)] = nums
                elif name.endswith(" total"):
                    stated[("total", name[: -len(" total")])] = nums
                else:
                    stated[(name, c[1]) if with_sub else (name,)] = nums
            actual: dict[tuple, list[int]] = collections.defaultdict(lambda: [0] * (1 + len(urg)))

            def add(k, u):
                actual[k][0] += 1
                if u in urg:
                    actual[k][1 + urg.index(u)] += 1

            for r in rows:
                u = r.get("urgency")
                add(("All",), u)
                if with_sub:
                    add(("total", r.get("label")), u)
                    add((r.get("label"), r.get("subcategory")), u)
                else:
                    add((r.get("label"),), u)
            for k in sorted(set(stated) | set(actual), key=str):
                if stated.get(k) != actual.get(k):
                    self.problem(where, f"row {' / '.join(map(str, k))}: README says {stated.get(k)}, data has {actual.get(k)}")
        # Languages line.
        langs = [ln for ln in text if ln.startswith("Languages:")]
        if len(langs) != 1:
            self.problem(where, "expected exactly one 'Languages:' line")
        else:
            stated_l = {}
            for name, code, num in re.findall(r"([^,:(]+?) \(`([a-z]{2})`\) (\d+)", langs[0]):
                stated_l[code] = int(num)
                if code in LANG_NAMES and LANG_NAMES[code] != name.strip():
                    self.problem(where, f"language `{code}` is {LANG_NAMES[code]}, not {name.strip()}")
            actual_l = collections.Counter(r.get("lang") for r in rows)
            if stated_l != dict(actual_l):
                self.problem(where, f"languages: README says {stated_l}, data has {dict(actual_l)}")
        # Flags line (test files).
        present = {f: sum(1 for r in rows if f in r) for f in FLAGS}
        flags = [ln for ln in text if ln.startswith("Flags:")]
        if any(present.values()):
            if len(flags) != 1:
                self.problem(where, "expected exactly one 'Flags:' line")
            else:
                stated_f = {f: int(n) for f, n in re.findall(r"`(\w+)` (\d+)", flags[0])}
                actual_f = {f: n for f, n in present.items() if n}
                if stated_f != actual_f:
                    self.problem(where, f"flags: README says {stated_f}, data has {actual_f}")

    # --- driver ---------------------------------------------------------------------------

    def run(self) -> int:
        corpora = sorted(p for p in self.root.iterdir() if (p / "taxonomy.toml").is_file())
        taxes = {}
        for corpus in corpora:
            tax = self.load_taxonomy(corpus)
            if tax is None:
                continue
            taxes[corpus.name] = tax
            for kind in FIELDS:
                path = corpus / kind
                if path.is_file():
                    self.rows[(corpus.name, kind)] = self.check_file(corpus.name, path, tax)
            for extra in sorted(corpus.glob("*.jsonl")):
                if extra.name not in FIELDS:
                    self.problem(str(extra), "unknown kind of file (add it to check.py's FIELDS)")
            if (corpus.name, "examples.jsonl") not in self.rows:
                self.problem(str(corpus), "no examples.jsonl")
            self.check_against_corpus(corpus.name)
        self.check_readme(taxes)
        self.summary()
        return 1 if self.problems else 0

    def summary(self) -> None:
        for (corpus, kind), rows in sorted(self.rows.items()):
            labels = collections.Counter(r.get("label") for r in rows)
            langs = collections.Counter(r.get("lang") for r in rows)
            flags = {f: sum(1 for r in rows if f in r) for f in FLAGS}
            print(f"{corpus}/{kind}: {len(rows)} rows")
            print("  labels:    " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items(), key=lambda kv: (-kv[1], str(kv[0])))))
            print("  languages: " + ", ".join(f"{k} {v}" for k, v in sorted(langs.items(), key=lambda kv: (-kv[1], str(kv[0])))))
            if any(flags.values()):
                print("  flags:     " + ", ".join(f"{k} {v}" for k, v in flags.items() if v))
        print(f"ids checked: {len(self.ids)} (unique across all corpora and files)")
        for w in self.warnings:
            print(f"warning: {w}")
        for p in self.problems:
            print(f"PROBLEM: {p}")
        print(f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s)")


def cells(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def script_mismatch(lang: str, text: str) -> str | None:
    """A coarse check that the text's script fits its `lang` code."""
    cjk, kana, hangul = len(CJK.findall(text)), len(KANA.findall(text)), len(HANGUL.findall(text))
    cyr, latin = len(CYRILLIC.findall(text)), len(LATIN.findall(text))
    if lang == "ja" and kana == 0 and cjk == 0:
        return "lang 'ja' but no Japanese script"
    if lang == "zh":
        if cjk == 0:
            return "lang 'zh' but no Chinese characters"
        if kana:
            return "lang 'zh' but the text contains kana (Japanese?)"
    if lang == "ko" and hangul == 0:
        return "lang 'ko' but no Hangul"
    if lang in ("ru", "uk", "bg", "sr", "mk", "be") and cyr <= latin:
        return f"lang {lang!r} but the text is not mostly Cyrillic"
    if lang not in ("ja", "zh", "ko", "ru", "uk", "bg", "sr", "mk", "be") and (cjk + kana + hangul + cyr) > latin:
        return f"lang {lang!r} but the text is mostly non-Latin script"
    return None


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    sys.exit(Checker(root).run())
