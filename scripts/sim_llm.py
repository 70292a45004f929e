#!/usr/bin/env python3
"""Simulated LLM for tests and benchmarks of ticket-triage (never shipped).

An OpenAI-compatible chat-completions server on a loopback address that knows
the gold labels of labelled files. For each ticket it finds in a request (the
fenced ticket after "Classify this ticket:" in the prompts of src/prompt.rs) it
is right with probability --p, decided once per ticket by a hash, so runs
repeat; otherwise it answers a plausible wrong label (a demonstration's label,
nearer demonstrations more likely).

    python3 scripts/sim_llm.py --gold data.jsonl --p 0.85 [--seed 1] [--port 0]

After binding it prints one line, "listening on http://127.0.0.1:PORT/v1", to
stdout. Python 3.11 standard library only. Endpoints:

    POST /v1/chat/completions (or /chat/completions)   the simulated model
    GET  /v1/models                                     one model
    GET  /stats                                         counters (JSON)
    POST /stats/reset                                   zero the counters
    GET  /health                                        {"ok": true}

Decisions (all hashes: first 8 bytes of sha256, big-endian, / 2**64):
    key   = normalised gold text when the ticket is found in the gold files,
            else the normalised prompt text (strip, collapse whitespace, lowercase)
    right = sha256(f"{seed}\\0{key}") < p
    other draws use sha256(f"{seed}\\0{tag}\\0{key}") with tag in
    wrong, wrong-sub, conf, lp, invalid, invalid-kind, and faults use
    sha256(f"{seed}\\0fault\\0{n}") with n the 1-based request counter.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.server
import ipaddress
import json
import math
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- mirrors of src/prompt.rs ------------------------------------------------

CLASSIFY_MARKER = "Classify this ticket:\n<ticket>\n"
TRUNCATED_RE = re.compile(r"\n\[\.\.\.[^\n\]]*truncated[^\n\]]*\]\Z")  # "\n[... ticket truncated ...]"
CATEGORIES_HEADER = "Categories (answer with the exact name):\n"
URGENCY_HEADER = "Urgency levels, lowest to highest (answer with the exact name):\n"
KEYS_HEADER = "Answer with one JSON object and nothing else, with these keys:\n"
SUBCATEGORIES_RE = re.compile(r"^Subcategories of (.*) \(answer with the exact name\):\n", re.M)
DECIDED_RE = re.compile(r"The ticket's category is already decided: ([^\n]*?)\.(?: |\n|$)")
EXAMPLE_RE = re.compile(
    r'<example rank="(\d+)"[^>\n]*>\n<ticket>\n(.*?)\n</ticket>\nlabel: ([^\n]*)\n</example>', re.S
)
MAX_SUMMARY_WORDS = 12


def fence_tags(text: str) -> str:
    """prompt.rs fence(), tag branch: `<ticket`, `</example`... lose their `<`."""
    return re.sub(r"<(/?(?:ticket|example))", r"[\1", text, flags=re.I)


def fence_angles(text: str) -> str:
    """prompt.rs fence(), fallback branch (lowercasing changed the byte length)."""
    return text.replace("<", "\u2039").replace(">", "\u203a")


def fence(text: str) -> str:
    if len(text.lower().encode()) != len(text.encode()):
        return fence_angles(text)
    return fence_tags(text)


def label_key(s: str) -> str:
    """taxonomy.rs label_key: case-, space-, '_'- and '-'-insensitive."""
    return " ".join(p for p in re.split(r"[\s_\-]+", s.strip().lower()) if p)


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def unit(*parts: Any) -> float:
    """A uniform draw in [0, 1) from the hash of the parts joined with NUL."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


# --- gold files ----------------------------------------------------------------


@dataclass
class Gold:
    text: str
    key: str  # normalised full text: the hash key
    label: str
    subcategory: str | None = None
    urgency: str | None = None
    secondary: list[str] = field(default_factory=list)


@dataclass
class GoldIndex:
    prefix_chars: int
    exact: dict[str, Gold] = field(default_factory=dict)
    prefix: dict[str, list[tuple[str, Gold]]] = field(default_factory=dict)
    rows: int = 0
    skipped: int = 0
    conflicts: int = 0

    def add(self, g: Gold) -> None:
        self.rows += 1
        variants = {g.key}
        if "<" in g.text or ">" in g.text:  # as fence() may have rewritten it
            variants |= {normalise(fence_tags(g.text)), normalise(fence_angles(g.text))}
        for v in variants:
            old = self.exact.setdefault(v, g)
            if old is not g:
                if label_key(old.label) != label_key(g.label):
                    self.conflicts += 1
                continue
            self.prefix.setdefault(v[: self.prefix_chars], []).append((v, g))

    def lookup(self, n: str) -> Gold | None:
        """The gold ticket of a normalised prompt text: an exact match, else one
        whose text starts with it (the prompt cut the ticket), found by its first
        `prefix_chars` characters. A text that only shares the prefix is unknown."""
        g = self.exact.get(n)
        if g is not None:
            return g
        for v, g in self.prefix.get(n[: self.prefix_chars], ()):
            if v.startswith(n):
                return g
        return None


def _field(row: dict, name: str | None) -> str | None:
    if not name:
        return None
    v = row.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        v = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
    v = v.strip()
    return v or None


def load_gold(paths: list[str], args: argparse.Namespace) -> GoldIndex:
    index = GoldIndex(prefix_chars=args.prefix_chars)
    for p in paths:
        path = Path(p)
        suffix = path.suffix.lower()
        with path.open(encoding="utf-8-sig", newline="") as f:
            if suffix in (".csv", ".tsv", ".tab"):
                rows = csv.DictReader(f, delimiter="," if suffix == ".csv" else "\t")
                items = list(rows)
            else:
                items = []
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        print(f"sim_llm: {p}:{line_no}: skipped, not JSON: {e}", file=sys.stderr)
                        index.skipped += 1
                        continue
                    if isinstance(obj, dict):
                        items.append(obj)
                    else:
                        index.skipped += 1
        for row in items:
            text = _field(row, args.text_field)
            labels = [args.label_field] if args.label_field else ["label", "category"]
            label = next((v for v in (_field(row, n) for n in labels) if v), None)
            if not text or not label:
                index.skipped += 1
                continue
            index.add(
                Gold(
                    text=text,
                    key=normalise(text),
                    label=label,
                    subcategory=_field(row, args.subcategory_field),
                    urgency=_field(row, args.urgency_field),
                    secondary=_labels(row.get(args.secondary_field)) if args.secondary_field else [],
                )
            )
    return index


def _labels(v: Any) -> list[str]:
    """Secondary labels: a JSON list of names, or comma-separated text (CSV)."""
    if isinstance(v, list):
        items = [x for x in v if isinstance(x, str)]
    elif isinstance(v, str):
        items = v.split(",")
    else:
        items = []
    return [x.strip() for x in items if x.strip()]


# --- reading a request ------------------------------------------------------------


class BadRequest(Exception):
    pass


@dataclass
class Demo:
    rank: int
    label: dict  # the parsed `label: {...}` JSON


@dataclass
class Prompt:
    system: str
    ticket: str  # as fenced in the prompt, marker removed
    found_ticket: bool
    truncated: bool
    repair: bool
    demos: list[Demo]
    schema: dict | None
    stage2: bool
    categories: list[str]  # allowed categories (stage 1 / one stage)
    subs_of: dict[str, list[str]]  # category -> its subcategories (system prompt)
    all_subs: list[str]  # flat allowed subcategories (schema enum or stage 2 list)
    urgency: list[str]
    required: list[str]
    decided: str | None  # stage 2: the decided category
    chars: int  # characters of every message, for usage


def _content(m: Any) -> str:
    if not isinstance(m, dict):
        raise BadRequest("every message must be an object with role and content")
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise BadRequest("message content must be a string or a list of parts")


def _section(text: str, header: str) -> list[str]:
    """The lines after `header` up to the first blank line."""
    at = text.find(header)
    if at < 0:
        return []
    out = []
    for line in text[at + len(header):].split("\n"):
        if not line.strip():
            break
        out.append(line)
    return out


def _item_name(rest: str, known: list[str]) -> str:
    """`Name` or `Name: description` -> Name, preferring a name the schema lists
    (a name that itself contains ": " is only read right when the schema has it)."""
    best = None
    for k in known:
        if rest == k or rest.startswith(k + ": "):
            if best is None or len(k) > len(best):
                best = k
    if best is not None:
        return best
    return rest.split(": ", 1)[0].strip()


def _enum(schema: dict | None, prop: str) -> list[str] | None:
    try:
        values = schema["properties"][prop]["enum"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    if not isinstance(values, list):
        return None
    return [v for v in values if isinstance(v, str)]


def parse_request(body: dict) -> Prompt:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    contents = [(m.get("role") if isinstance(m, dict) else None, _content(m)) for m in messages]
    if any(not isinstance(r, str) for r, _ in contents):
        raise BadRequest("every message needs a string 'role'")
    system = "\n".join(c for r, c in contents if r in ("system", "developer"))

    # The ticket: the last user message holding "Classify this ticket:" (a repair
    # request's last user message is the complaint, not the ticket).
    idx = None
    for i in range(len(contents) - 1, -1, -1):
        if contents[i][0] == "user" and CLASSIFY_MARKER in contents[i][1]:
            idx = i
            break
    if idx is None:
        users = [i for i, (r, _) in enumerate(contents) if r == "user"]
        if not users:
            raise BadRequest("no user message")
        idx = users[-1]
        user = contents[idx][1]
        ticket, found, truncated, demo_part = user, False, False, user
    else:
        user = contents[idx][1]
        at = user.rfind(CLASSIFY_MARKER)
        demo_part = user[:at]
        rest = user[at + len(CLASSIFY_MARKER):]
        end = rest.rfind("\n</ticket>")
        ticket = rest[:end] if end >= 0 else rest
        m = TRUNCATED_RE.search(ticket)
        truncated = m is not None
        if m:
            ticket = ticket[: m.start()]
        found = True
    repair = any(r == "assistant" for r, _ in contents[idx + 1:])

    demos = []
    for m in EXAMPLE_RE.finditer(demo_part):
        try:
            label = json.loads(m.group(3))
        except json.JSONDecodeError:
            continue
        if isinstance(label, dict):
            demos.append(Demo(rank=int(m.group(1)), label=label))
    demos.sort(key=lambda d: d.rank)

    schema = None
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        js = rf.get("json_schema")
        if isinstance(js, dict) and isinstance(js.get("schema"), dict):
            schema = js["schema"]
    props = schema.get("properties") if schema else None
    if schema is not None and not isinstance(props, dict):
        schema, props = None, None

    schema_cats = _enum(schema, "category")
    schema_subs = _enum(schema, "subcategory")
    schema_urg = _enum(schema, "urgency")

    # Required keys: the schema's, else the answer shape line of the system prompt.
    required: list[str] = []
    if schema is not None and isinstance(schema.get("required"), list):
        required = [k for k in schema["required"] if isinstance(k, str)]
    if not required:
        shape = _section(system, KEYS_HEADER)
        if shape:
            required = re.findall(r'"(\w+)":', shape[0])
    stage2 = (props is not None and "subcategory" in props and "category" not in props) or (
        props is None and SUBCATEGORIES_RE.search(system) is not None and CATEGORIES_HEADER not in system
    )
    if not required:
        required = ["reasoning", "subcategory"] if stage2 else ["reasoning", "category", "summary", "confidence"]

    # Categories and the subcategories under each, from the system prompt.
    categories: list[str] = []
    subs_of: dict[str, list[str]] = {}
    current = None
    for line in _section(system, CATEGORIES_HEADER):
        if line.startswith("    - subcategory "):
            if current is not None:
                subs_of[current].append(_item_name(line[len("    - subcategory "):], schema_subs or []))
        elif line.startswith("- "):
            current = _item_name(line[2:], schema_cats or [])
            categories.append(current)
            subs_of[current] = []
    if schema_cats is not None:
        categories = schema_cats
    urgency = schema_urg if schema_urg is not None else [
        _item_name(l[2:], []) for l in _section(system, URGENCY_HEADER) if l.startswith("- ")
    ]

    decided = None
    all_subs: list[str] = []
    if stage2:
        m = SUBCATEGORIES_RE.search(system)
        listed = []
        if m:
            decided = m.group(1)
            listed = [_item_name(l[2:], schema_subs or []) for l in _section(system, m.group(0)) if l.startswith("- ")]
        else:
            d = DECIDED_RE.search(system)
            decided = d.group(1) if d else None
        all_subs = schema_subs if schema_subs is not None else listed
    else:
        all_subs = schema_subs if schema_subs is not None else [s for v in subs_of.values() for s in v]

    return Prompt(
        system=system,
        ticket=ticket,
        found_ticket=found,
        truncated=truncated,
        repair=repair,
        demos=demos,
        schema=schema,
        stage2=stage2,
        categories=categories,
        subs_of=subs_of,
        all_subs=all_subs,
        urgency=urgency,
        required=required,
        decided=decided,
        chars=sum(len(c) for _, c in contents),
    )


# --- the simulated model ---------------------------------------------------------------


def canon(name: str | None, allowed: list[str]) -> str | None:
    if not name:
        return None
    k = label_key(name)
    return next((a for a in allowed if label_key(a) == k), None)


def weighted_pick(weights: list[tuple[str, float]], u: float) -> str:
    total = sum(w for _, w in weights)
    acc = 0.0
    for name, w in weights:
        acc += w / total
        if u < acc:
            return name
    return weights[-1][0]


def hashed_pick(options: list[str], *parts: Any) -> str:
    return options[min(int(unit(*parts) * len(options)), len(options) - 1)]


def plausible_wrong(
    demos: list[Demo], field_name: str, gold_key: str | None, allowed: list[str], seed: int, key: str, tag: str
) -> tuple[str | None, Demo | None]:
    """A non-gold label: a demonstration's (weight 1/rank, summed over its
    demonstrations), else a non-gold allowed one by hash. (None, None) if none."""
    weights: dict[str, float] = {}
    first: dict[str, Demo] = {}
    for d in demos:
        v = d.label.get(field_name)
        if not isinstance(v, str) or not v.strip() or (gold_key is not None and label_key(v) == gold_key):
            continue
        name = canon(v, allowed) if allowed else v
        if name is None:
            continue
        weights[name] = weights.get(name, 0.0) + 1.0 / max(d.rank, 1)
        first.setdefault(name, d)
    if weights:
        name = weighted_pick(list(weights.items()), unit(seed, tag, key))
        return name, first[name]
    others = [a for a in allowed if gold_key is None or label_key(a) != gold_key]
    if others:
        return hashed_pick(others, seed, tag, key), None
    return None, None


def invented_label(allowed: list[str], base: str = "Other") -> str:
    keys = {label_key(a) for a in allowed}
    for cand in [base, f"{base} (unlisted)"] + [f"{base} {i}" for i in range(2, 100)]:
        if label_key(cand) not in keys:
            return cand
    return "Unlisted " + hashlib.sha256(repr(allowed).encode()).hexdigest()[:8]


@dataclass
class Decision:
    kind: str  # right | wrong | unknown
    answer: dict
    field: str  # the field whose value gets the label probability
    invalid: str | None = None  # label | json | missing
    gold_not_offered: bool = False
    gold: str | None = None
    key: str = ""


class Simulator:
    def __init__(self, args: argparse.Namespace, gold: GoldIndex):
        self.args = args
        self.gold = gold
        self.lock = threading.Lock()
        self.counter = 0
        self.stats = self._zero()

    @staticmethod
    def _zero() -> dict[str, int]:
        keys = [
            "requests", "answered", "right", "wrong", "unknown", "gold_not_offered", "invalid",
            "faults_5xx", "faults_429", "hangs", "bad_requests", "repairs",
            "stage2_requests", "stage2_right", "stage2_wrong",
        ]
        return dict.fromkeys(keys, 0)

    def bump(self, **inc: int) -> None:
        with self.lock:
            for k, v in inc.items():
                self.stats[k] += v

    def next_request(self) -> int:
        with self.lock:
            self.counter += 1
            self.stats["requests"] += 1
            return self.counter

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.stats)

    def reset(self) -> None:
        with self.lock:
            self.stats = self._zero()
            self.counter = 0

    def fault(self, n: int) -> str | None:
        a = self.args
        u = unit(a.seed, "fault", n)
        if u < a.fault_5xx:
            return "5xx"
        if u < a.fault_5xx + a.fault_429:
            return "429"
        if u < a.fault_5xx + a.fault_429 + a.hang:
            return "hang"
        return None

    # -- answers

    def decide(self, p: Prompt) -> Decision:
        a = self.args
        norm = normalise(p.ticket)
        gold = self.gold.lookup(norm) if norm else None
        key = gold.key if gold else norm
        right_draw = unit(a.seed, key) < a.p
        words = p.ticket.split()[:MAX_SUMMARY_WORDS]
        summary = " ".join(words) if words else "Empty ticket"

        if p.stage2:
            d = self._stage2(p, gold, key, right_draw)
        else:
            d = self._stage1(p, gold, key, right_draw, summary)
        d.key = key

        # Invalid first answers (and, with --invalid-sticky, invalid repairs too).
        if a.invalid_rate > 0 and unit(a.seed, "invalid", key) < a.invalid_rate and (a.invalid_sticky or not p.repair):
            d.invalid = ["label", "json", "missing"][int(unit(a.seed, "invalid-kind", key) * 3)]
        return d

    def _confidence(self, kind: str, key: str) -> float:
        a = self.args
        base = a.confidence_right if kind == "right" else a.confidence_wrong
        return round(clip(base + (2 * unit(a.seed, "conf", key) - 1) * a.confidence_jitter, 0.05, 0.99), 3)

    def _stage1(self, p: Prompt, gold: Gold | None, key: str, right_draw: bool, summary: str) -> Decision:
        a = self.args
        allowed = list(p.categories)
        if not allowed:  # nothing parseable: demonstrations and the gold label
            for d in p.demos:
                v = d.label.get("category")
                if isinstance(v, str) and canon(v, allowed) is None:
                    allowed.append(v)
            if gold and canon(gold.label, allowed) is None:
                allowed.append(gold.label)
        chosen_demo: Demo | None = None
        gold_not_offered = False
        if gold is None:
            kind = "unknown"
            category = None
            for d in p.demos:
                category = canon(d.label.get("category"), allowed) if isinstance(d.label.get("category"), str) else None
                if category:
                    chosen_demo = d
                    break
            category = category or (allowed[0] if allowed else "Other")
        else:
            gold_c = canon(gold.label, allowed)
            gold_not_offered = gold_c is None
            if right_draw and gold_c:
                kind, category = "right", gold_c
            else:
                name, chosen_demo = plausible_wrong(
                    p.demos, "category", label_key(gold.label), allowed, a.seed, key, "wrong"
                )
                if name is None:  # the gold label is the only one allowed
                    kind, category = ("right", gold_c) if gold_c else ("wrong", allowed[0] if allowed else "Other")
                else:
                    kind, category = "wrong", name

        reason = {
            "right": f"The ticket matches the {category} precedent.",
            "wrong": f"The ticket resembles the examples labelled {category}.",
            "unknown": f"The nearest example is labelled {category}.",
        }[kind]
        answer: dict[str, Any] = {"reasoning": reason, "category": category}

        if "subcategory" in p.required or (p.schema and "subcategory" in (p.schema.get("properties") or {})):
            answer["subcategory"] = self._subcategory(p, category, gold if kind == "right" else None, chosen_demo)
        if "urgency" in p.required or p.urgency:
            answer["urgency"] = self._urgency(p, gold)
        if "secondary" in p.required or (p.schema and "secondary" in (p.schema.get("properties") or {})):
            # Right answers name the gold file's secondary issues (those the prompt
            # offers, never the chosen category); wrong and unknown ones none.
            sec = [canon(s, allowed) for s in (gold.secondary if gold and kind == "right" else [])]
            answer["secondary"] = [
                {"category": s, "reason": f"The ticket also raises a {s} issue."}
                for s in dict.fromkeys(x for x in sec if x and label_key(x) != label_key(category))
            ]
        answer["summary"] = summary
        answer["confidence"] = self._confidence(kind, key)
        return Decision(kind, answer, "category", gold_not_offered=gold_not_offered, gold=gold.label if gold else None)

    def _subcategory(self, p: Prompt, category: str, gold: Gold | None, chosen: Demo | None) -> str | None:
        ck = label_key(category)
        mapped = next((v for k, v in p.subs_of.items() if label_key(k) == ck), None)
        if mapped is not None and not mapped:
            return None  # the category has no subcategories
        allowed = mapped if mapped is not None else p.all_subs

        def ok(s: Any) -> str | None:
            return canon(s, allowed) if isinstance(s, str) else None

        if gold is not None and ok(gold.subcategory):  # right, and gold's is known
            return ok(gold.subcategory)
        cands = [chosen] if chosen else []
        cands += [d for d in p.demos if isinstance(d.label.get("category"), str) and label_key(d.label["category"]) == ck]
        for d in cands:
            s = ok(d.label.get("subcategory"))
            if s:
                return s
        return mapped[0] if mapped else None

    def _urgency(self, p: Prompt, gold: Gold | None) -> str:
        levels = p.urgency
        if gold and gold.urgency and (canon(gold.urgency, levels) or not levels):
            return canon(gold.urgency, levels) or gold.urgency
        for d in p.demos:
            u = d.label.get("urgency")
            if isinstance(u, str) and (canon(u, levels) or not levels):
                return canon(u, levels) or u
        return levels[0] if levels else "Medium"

    def _stage2(self, p: Prompt, gold: Gold | None, key: str, right_draw: bool) -> Decision:
        a = self.args
        allowed = p.all_subs
        if gold is None:
            kind = "unknown"
            sub = None
            for d in p.demos:
                s = d.label.get("subcategory")
                sub = canon(s, allowed) if isinstance(s, str) else None
                if sub:
                    break
            sub = sub or (allowed[0] if allowed else None)
        else:
            gold_s = canon(gold.subcategory, allowed)
            decided_is_gold = p.decided is None or label_key(p.decided) == label_key(gold.label)
            # A gold file without a subcategory means "none": null is then right,
            # when the decided category is gold's.
            null_is_gold = gold.subcategory is None and decided_is_gold
            if right_draw and (gold_s or null_is_gold):
                kind, sub = "right", gold_s
            else:
                gk = label_key(gold.subcategory) if gold.subcategory else None
                sub, _ = plausible_wrong(p.demos, "subcategory", gk, allowed, a.seed, key, "wrong-sub")
                # Nothing but null left: wrong unless null is gold.
                kind = "right" if sub is None and null_is_gold else "wrong"
        reason = f"The closest subcategory is {sub}." if sub else "No subcategory fits."
        return Decision(kind, {"reasoning": reason, "subcategory": sub}, "subcategory", gold=gold.label if gold else None)

    def render(self, p: Prompt, d: Decision) -> str:
        answer = dict(d.answer)
        if d.invalid == "label":
            if p.stage2:
                answer["subcategory"] = invented_label(p.all_subs, "Other")
            else:
                answer["category"] = invented_label(p.categories, "Other")
        elif d.invalid == "missing":
            answer.pop("subcategory" if p.stage2 else "confidence", None)
        text = json.dumps(answer, ensure_ascii=False)
        if d.invalid == "json":
            # Cut-off output: no closing brace, so no JSON object can be read.
            span = value_span(text, d.field)
            cut = span[1] + 3 if span else len(text) // 2
            text = text[: min(cut, len(text) - 1)]
        return text

    def label_probability(self, kind: str, key: str) -> float:
        a = self.args
        base = a.logprob_right if kind == "right" else a.logprob_wrong
        return clip(base + (2 * unit(a.seed, "lp", key) - 1) * a.logprob_jitter, 0.01, 0.999)


def value_span(text: str, key: str) -> tuple[int, int] | None:
    """Where the string value of `key` lies, as llm/mod.rs field_probability finds it."""
    needle = f'"{key}"'
    at = text.find(needle)
    if at < 0:
        return None
    i = at + len(needle)
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != ":":
        return None
    i += 1
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != '"':
        return None
    start = i + 1
    end = start
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    if end >= len(text) or end == start:
        return None
    return start, end


TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def tokenize(s: str) -> list[str]:
    return TOKEN_RE.findall(s)


def logprob_tokens(text: str, field_name: str, q: float) -> list[dict]:
    """Tokens that concatenate to `text`; those of the value of `field_name` have
    log-probabilities summing to ln(q), the others are near-certain."""
    span = value_span(text, field_name)
    if span:
        parts = [(text[: span[0]], False), (text[span[0]: span[1]], True), (text[span[1]:], False)]
    else:
        parts = [(text, False)]
    out = []
    for seg, is_value in parts:
        toks = tokenize(seg)
        for i, t in enumerate(toks):
            if is_value:
                lp = math.log(q) / len(toks)
            else:
                lp = -0.0005 * (1 + (i * 7 + len(t)) % 9)
            out.append({"token": t, "logprob": lp, "bytes": list(t.encode("utf-8")), "top_logprobs": []})
    return out


# --- HTTP ----------------------------------------------------------------------------

MAX_BODY = 32 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sim-llm/1"
    # Small writes on keep-alive connections: without this, Nagle and delayed ACKs
    # cost ~40 ms per request.
    disable_nagle_algorithm = True
    sim: Simulator  # set on the class by serve()

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.sim.args.verbose:
            sys.stderr.write("sim_llm: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, etype: str, headers: dict[str, str] | None = None) -> None:
        # Never mention logprobs or the schema here: the project's client takes such
        # messages as "this server does not support the option" and stops asking.
        self._send(status, {"error": {"message": message, "type": etype, "code": status}}, headers)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise BadRequest("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise BadRequest("request body too large or bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path in ("/stats", "/v1/stats"):
            self._send(200, self.sim.snapshot())
        elif path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [
                {"id": self.sim.args.model, "object": "model", "created": 0, "owned_by": "sim-llm"}]})
        elif path in ("/health", "/v1/health", "/"):
            self._send(200, {"ok": True})
        else:
            self._error(404, f"no such endpoint: GET {path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        try:
            raw = self._read_body()
        except (BadRequest, ValueError) as e:
            self.close_connection = True
            self.sim.bump(bad_requests=1)
            self._error(400, str(e), "invalid_request_error")
            return
        if path in ("/stats/reset", "/v1/stats/reset"):
            self.sim.reset()
            self._send(200, {"ok": True})
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(raw)
        else:
            self._error(404, f"no such endpoint: POST {path}", "not_found")

    def _chat(self, raw: bytes) -> None:
        sim, a = self.sim, self.sim.args
        n = sim.next_request()
        if a.latency_ms > 0:
            time.sleep(a.latency_ms / 1000.0)
        fault = sim.fault(n)
        if fault == "5xx":
            sim.bump(faults_5xx=1)
            self._error(500, "simulated internal server error", "server_error")
            return
        if fault == "429":
            sim.bump(faults_429=1)
            self._error(429, "simulated rate limit, slow down", "rate_limit_error",
                        {"Retry-After": f"{a.retry_after:g}"})
            return
        if fault == "hang":
            sim.bump(hangs=1)
            time.sleep(a.hang_seconds)
        try:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise BadRequest(f"request body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            prompt = parse_request(body)
        except BadRequest as e:
            sim.bump(bad_requests=1)
            self._error(400, str(e), "invalid_request_error")
            return
        try:
            decision = sim.decide(prompt)
            content = sim.render(prompt, decision)
        except Exception as e:  # a bug here must not kill the server
            sim.bump(bad_requests=1)
            self._error(400, f"cannot answer this request: {type(e).__name__}: {e}", "invalid_request_error")
            return

        inc = {"answered": 1}
        if prompt.repair:
            inc["repairs"] = 1
        if decision.invalid:
            inc["invalid"] = 1
        elif decision.kind == "unknown":
            inc["unknown"] = 1
        elif prompt.stage2:
            inc["stage2_" + decision.kind] = 1
        else:
            inc[decision.kind] = 1
        if prompt.stage2:
            inc["stage2_requests"] = 1
        elif decision.gold_not_offered:
            inc["gold_not_offered"] = 1
        sim.bump(**inc)

        logprobs = None
        if a.logprobs and body.get("logprobs"):
            q = sim.label_probability(decision.kind, decision.key)
            logprobs = {"content": logprob_tokens(content, decision.field, q)}
        model = body.get("model") if isinstance(body.get("model"), str) else a.model
        self._send(
            200,
            {
                "id": f"chatcmpl-sim-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "sim-llm",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": max(1, prompt.chars // 4),
                    "completion_tokens": max(1, len(content) // 4),
                    "total_tokens": max(1, prompt.chars // 4) + max(1, len(content) // 4),
                },
            },
            {"X-Sim-Kind": "invalid" if decision.invalid else decision.kind},
        )


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128


class Server6(Server):
    address_family = socket.AF_INET6


def loopback_only(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def rate(s: str) -> float:
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{s} is not in [0, 1]")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gold", action="append", required=True, metavar="FILE", help="labelled JSONL/CSV/TSV file (repeatable)")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--label-field", default=None, help="default: label, then category")
    ap.add_argument("--subcategory-field", default="subcategory")
    ap.add_argument("--urgency-field", default="urgency")
    ap.add_argument("--secondary-field", default="secondary", help="list of secondary labels (JSON list or comma-separated)")
    ap.add_argument("--p", type=rate, default=0.85, help="probability of a right answer per ticket")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="sim-llm", help="model id of GET /v1/models (answers echo the request's)")
    ap.add_argument("--prefix-chars", type=int, default=300, help="normalised characters of the prefix key")
    ap.add_argument("--confidence-right", type=rate, default=0.9)
    ap.add_argument("--confidence-wrong", type=rate, default=0.9)
    ap.add_argument("--confidence-jitter", type=float, default=0.05)
    ap.add_argument("--logprobs", action="store_true", help="return token logprobs when asked")
    ap.add_argument("--logprob-right", type=rate, default=0.95)
    ap.add_argument("--logprob-wrong", type=rate, default=0.6)
    ap.add_argument("--logprob-jitter", type=float, default=0.1)
    ap.add_argument("--invalid-rate", type=rate, default=0.0)
    ap.add_argument("--invalid-sticky", action="store_true", help="repairs of invalid tickets are invalid too")
    ap.add_argument("--fault-5xx", type=rate, default=0.0)
    ap.add_argument("--fault-429", type=rate, default=0.0)
    ap.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of 429s")
    ap.add_argument("--hang", type=rate, default=0.0)
    ap.add_argument("--hang-seconds", type=float, default=30.0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if args.fault_5xx + args.fault_429 + args.hang > 1.0:
        ap.error("--fault-5xx + --fault-429 + --hang must not exceed 1")
    if args.prefix_chars < 1:
        ap.error("--prefix-chars must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not loopback_only(args.host):
        print(f"sim_llm: refusing to bind {args.host}: not a loopback address", file=sys.stderr)
        return 2
    try:
        gold = load_gold(args.gold, args)
    except OSError as e:
        print(f"sim_llm: cannot read gold file: {e}", file=sys.stderr)
        return 2
    if gold.rows == 0:
        print("sim_llm: the gold files have no rows with text and label", file=sys.stderr)
        return 2
    print(
        f"sim_llm: {gold.rows} gold tickets ({gold.skipped} rows skipped, {gold.conflicts} conflicting duplicates)",
        file=sys.stderr,
    )
    Handler.sim = Simulator(args, gold)
    cls = Server6 if ":" in args.host else Server
    try:
        server = cls((args.host, args.port), Handler)
    except OSError as e:
        print(f"sim_llm: cannot bind {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"listening on http://{shown}:{port}/v1\n")
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
