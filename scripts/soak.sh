#!/usr/bin/env bash
# Soak test of `triage serve` on 127.0.0.1: classification load against a faulty
# simulated LLM (scripts/sim_llm.py: 5xx, 429 with Retry-After, hung requests), and
# examples posted and deleted while the server is killed with SIGKILL and restarted
# over and over. Two store faults on top: the journal's disk fails under the writes
# (injected: an append stops part-way with ENOSPC, the cut-back after it sometimes fails
# too, a sync sometimes fails; writes then get 503 and must not take later acknowledged
# writes with them), and between a kill and the restart one record in the middle of the
# journal is sometimes damaged on disk (the restarted server must quarantine it, replay
# the rest, and answer /readyz 503 naming the file until the soak, as the operator, moves
# it away). At the end every acknowledged write is checked against the store (a fresh
# `triage export`). Prints a JSON summary: acknowledged writes, lost writes (must be 0;
# writes whose journal record the soak damaged are counted apart, and must all be in a
# quarantine file), requests by status, the server's RSS over time. Exit 1 if a write
# was lost, a damaged record was not quarantined, or /readyz did not say so.
#   scripts/soak.sh [SECONDS]                  (default 300, at most 540: with set-up, under 10 minutes)
# Env: TRIAGE_BIN (a built triage; default: release build here), SOAK_SEED (42),
#   SOAK_CLIENTS (classification clients, 4), SOAK_WRITERS (example writers, 2),
#   SOAK_FAULT_5XX (0.10), SOAK_FAULT_429 (0.10), SOAK_HANG (0.05), SOAK_HANG_SECONDS (4),
#   SOAK_KILL_MIN / SOAK_KILL_MAX (seconds between kills, 5 / 20), SIM_LLM (path of sim_llm.py),
#   SOAK_REFIT_AFTER (the server refits the calibrated collection in the background after
#   this many posted examples, 20),
#   SOAK_JOURNAL_FAULTS (the injected journal faults, as TRIAGE_TEST_JOURNAL_FAULTS takes them:
#   "full=0.01,stuck=0.1,sync=0.005"; empty: none. They need a build with the test-doubles
#   feature, which this script makes unless TRIAGE_BIN is given),
#   SOAK_DAMAGE (chance that a journal record is damaged before a restart, 0.5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
if [ "$seconds" -gt 540 ]; then
    echo "soak: at most 540 seconds" >&2
    exit 2
fi
sim="${SIM_LLM:-$root/scripts/sim_llm.py}"
[ -f "$sim" ] || { echo "soak: $sim is missing (the simulated LLM)" >&2; exit 2; }
export SOAK_JOURNAL_FAULTS="${SOAK_JOURNAL_FAULTS-full=0.01,stuck=0.1,sync=0.005}"
[ -n "$SOAK_JOURNAL_FAULTS" ] && export TRIAGE_FEATURES=test-doubles
. scripts/serve-common.sh
export TRIAGE_DATA_DIR="$work/data"
"$bin" index examples_store/saas-support --collection saas >/dev/null
# Calibrated, so the server also refits the head and calibration in the background after
# every SOAK_REFIT_AFTER examples posted (and is killed during some of those refits).
"$bin" calibrate --collection saas >/dev/null

python3 "$sim" --gold examples_store/saas-support/examples.jsonl --p 0.85 --port 0 --seed "${SOAK_SEED:-42}" \
    --fault-5xx "${SOAK_FAULT_5XX:-0.10}" --fault-429 "${SOAK_FAULT_429:-0.10}" --retry-after 1 \
    --hang "${SOAK_HANG:-0.05}" --hang-seconds "${SOAK_HANG_SECONDS:-4}" >"$work/sim.out" 2>"$work/sim.err" &
pids=($!)
llm="$(wait_listening "$work/sim.out")"
[ -n "$llm" ] || { cat "$work/sim.err" >&2; exit 1; }

python3 - "$bin" "$llm" "$seconds" examples_store/saas-support/examples.jsonl <<'PY'
import collections, glob, http.client, json, os, random, signal, subprocess, sys, threading, time

bin_, llm, seconds, corpus = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rng = random.Random(int(os.environ.get("SOAK_SEED", "42")))
clients = int(os.environ.get("SOAK_CLIENTS", "4"))
writers = int(os.environ.get("SOAK_WRITERS", "2"))
kill_min, kill_max = float(os.environ.get("SOAK_KILL_MIN", "5")), float(os.environ.get("SOAK_KILL_MAX", "20"))
texts = [json.loads(l)["text"] for l in open(corpus, encoding="utf-8") if l.strip()]
labels = ["Billing", "Technical", "Feature Request"]

lock = threading.Lock()
statuses = collections.Counter()   # "classify 200", "examples 200", "classify error", ...
acked = {}                         # example id -> "present" | "absent" (last acknowledged write)
unsure = set()                     # ids whose last write got no answer
refused = set()                    # ids whose last write got 503 (outcome unknown: not acknowledged)
rss = []                           # (seconds since start, MiB, restarts so far)
methods = collections.Counter()
start = time.monotonic()
deadline = start + seconds
restarts = 0

refits = collections.Counter()
faults_spec = os.environ.get("SOAK_JOURNAL_FAULTS", "")
damage_chance = float(os.environ.get("SOAK_DAMAGE", "0.5"))
collection_dir = os.path.join(os.environ["TRIAGE_DATA_DIR"], "collections", "saas")
journal = os.path.join(collection_dir, "journal.log")
damaged = set()                    # example ids whose journal record the soak damaged
damage = collections.Counter()     # what the damage fault did and what the server said
fault_log = collections.Counter()  # the server's own lines about the faults

def note(line):
    # Count the server's background refits by outcome, and its lines about journal faults.
    for outcome in ("background refit done", "background refit failed", "background refit stopped"):
        if outcome in line:
            refits[outcome] += 1
    for what in ("injecting journal faults", "refusing writes until the process restarts",
                 "cannot be replayed", "dropping a torn last record"):
        if what in line:
            fault_log[what] += 1

def drain(stream):
    # Keep reading the server's log.
    for line in stream:
        note(line)

def serve():
    env = {**os.environ, "TRIAGE_LOG": "warn,qdrant_edge=error,ticket_triage::serve::refit=info"}
    if faults_spec:
        env["TRIAGE_TEST_JOURNAL_FAULTS"] = f"{faults_spec},seed={1000 + restarts}"
    p = subprocess.Popen([bin_, "serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--llm-base-url", llm,
                          "--llm-timeout", "3", "--llm-deadline", "8", "--llm-retry-base-ms", "200", "--json-mode", "object",
                          "--refit-after", os.environ.get("SOAK_REFIT_AFTER", "20")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         # The refit's "done" line is at info level; everything else stays at warn.
                         env=env)
    for line in p.stderr:
        note(line)  # replay, quarantine and torn tails are logged before it listens
        if line.startswith("listening on "):
            url = line.split()[2]
            threading.Thread(target=drain, args=(p.stderr,), daemon=True).start()
            return p, url
    raise SystemExit("triage serve exited before listening")

def request(url, method, path, body=None):
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()

def classifier(state, wid):
    r = random.Random(wid)
    while state["alive"]:
        kind = "batch" if r.random() < 0.2 else "classify"
        try:
            if kind == "batch":
                body = {"tickets": [{"text": r.choice(texts)} for _ in range(r.randint(2, 8))]}
                st, out = request(state["url"], "POST", "/v1/classify/batch", body)
                got = out["results"] if st == 200 else []
            else:
                st, out = request(state["url"], "POST", "/v1/classify", {"text": r.choice(texts)})
                got = [out] if st == 200 else []
            with lock:
                statuses[f"{kind} {st}"] += 1
                for g in got:
                    methods[g["method"]] += 1
        except Exception:
            with lock:
                statuses[f"{kind} no answer"] += 1
            time.sleep(0.05)

def writer(state, wid):
    r = random.Random(1000 + wid)
    mine = []
    while state["alive"]:
        if mine and r.random() < 0.3:
            eid, op = mine.pop(r.randrange(len(mine))), "delete"
        else:
            state["n"] += 1
            eid, op = f"soak-{restarts}-{wid}-{state['n']}", "post"
        with lock:
            unsure.add(eid)
        try:
            if op == "post":
                body = {"examples": [{"id": eid, "label": r.choice(labels),
                        "text": f"Soak example {eid}: {r.choice(texts)}"}]}
                st, answer = request(state["url"], "POST", "/v1/examples", body)
            else:
                st, answer = request(state["url"], "DELETE", f"/v1/examples/{eid}")
        except Exception:
            with lock:
                statuses[f"examples no answer"] += 1
            return  # the server is gone; the next round starts new writers
        with lock:
            statuses[f"examples {op} {st}"] += 1
            if st == 503 and "refusing writes" in json.dumps(answer):
                statuses[f"examples {op} 503 (journal refusing writes)"] += 1
            if st == 503:
                unsure.discard(eid)
                refused.add(eid)
            if st == 200:
                unsure.discard(eid)
                refused.discard(eid)
                acked[eid] = "present" if op == "post" else "absent"
                if op == "post":
                    mine.append(eid)
        if st == 503:
            time.sleep(0.2)  # the store is failing: do not spin

def rss_of(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None

def damage_a_record():
    # Between a kill and the restart: change one byte of one upsert record that has
    # records after it (a damaged middle record, not a torn tail), and remember its ids.
    try:
        data = open(journal, "rb").read()
    except OSError:
        return
    lines = [l for l in data.split(b"\n") if l.strip()]
    candidates = [i for i, l in enumerate(lines[:-1]) if b'"op":"upsert"' in l]
    if not candidates:
        damage["journal too short to damage"] += 1
        return
    line = lines[rng.choice(candidates)]
    try:
        record = json.loads(line.split(b" ", 1)[1])
    except (IndexError, ValueError):
        return
    ids = [p["payload"]["id"] for p in record["points"]]
    at = data.index(line) + line.index(b'"vector":[') + len(b'"vector":[')
    data = data[:at] + (b"7" if data[at:at + 1] != b"7" else b"8") + data[at + 1:]
    open(journal, "wb").write(data)
    with lock:
        damaged.update(ids)
    damage["records damaged"] += 1
    damage["writes in them"] += len(ids)

def check_quarantine(url):
    # The restarted server must say not ready, naming the quarantine file; the soak
    # (the operator) then moves the file away and readiness comes back.
    q = os.path.join(collection_dir, "journal.quarantine")
    try:
        st, body = request(url, "GET", "/readyz")
    except Exception:
        damage["readyz no answer"] += 1
        return
    if st == 503 and q in (body or {}).get("reason", ""):
        damage["readyz 503 naming the quarantine file"] += 1
    else:
        damage[f"readyz {st} without the quarantine file"] += 1
    if os.path.exists(q):
        os.rename(q, f"{q}.seen-{restarts}")
        st, _ = request(url, "GET", "/readyz")
        damage[f"readyz {st} after the file was moved"] += 1

while time.monotonic() < deadline:
    damaged_now = restarts > 0 and rng.random() < damage_chance
    if damaged_now:
        damage_a_record()
    proc, url = serve()
    if damaged_now:
        check_quarantine(url)
    state = {"url": url, "alive": True, "n": 0}
    threads = [threading.Thread(target=classifier, args=(state, i)) for i in range(clients)]
    threads += [threading.Thread(target=writer, args=(state, i)) for i in range(writers)]
    for t in threads:
        t.start()
    until = min(deadline, time.monotonic() + rng.uniform(kill_min, kill_max))
    while time.monotonic() < until:
        m = rss_of(proc.pid)
        if m is not None:
            rss.append((round(time.monotonic() - start, 1), round(m, 1), restarts))
        time.sleep(1)
    last = time.monotonic() >= deadline
    if last:
        state["alive"] = False
        for t in threads:
            t.join()
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGKILL)
        restarts += 1
    proc.wait()
    state["alive"] = False
    for t in threads:
        t.join()

def sim_stats():
    try:
        host, port = llm.split("//")[1].split("/")[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    except Exception as e:
        return {"error": str(e)}

out = subprocess.run([bin_, "export", "--collection", "saas"], capture_output=True, text=True, check=True)
stored = {json.loads(l)["payload"]["id"] for l in out.stdout.splitlines()[1:] if l.strip()}
# A write whose journal record the soak damaged is not lost by the server: it is in a
# quarantine file, for the operator. Counted apart, and checked to be there.
quarantined_text = "".join(open(f, encoding="utf-8", errors="replace").read()
                           for f in glob.glob(os.path.join(collection_dir, "journal.quarantine*")))
in_quarantine = sorted(i for i in damaged if f'"{i}"' in quarantined_text)
settled = lambda i: i not in unsure and i not in refused
lost = sorted(i for i, s in acked.items() if settled(i) and s == "present" and i not in stored and i not in damaged)
back = sorted(i for i, s in acked.items() if settled(i) and s == "absent" and i in stored)
samples = [s for s in rss]
step = max(1, len(samples) // 30)
summary = {
    "seconds": round(time.monotonic() - start, 1),
    "kill_9_restarts": restarts,
    "acknowledged_writes": sum(v for k, v in statuses.items() if k.startswith("examples") and k.endswith(" 200")),
    "acknowledged_examples_present": sum(1 for i, s in acked.items() if s == "present" and settled(i)),
    "acknowledged_deletes": sum(1 for i, s in acked.items() if s == "absent" and settled(i)),
    "unanswered_writes": len(unsure),
    "writes_last_answered_503": len(refused),
    "lost_writes": len(lost) + len(back),
    "lost_examples": lost[:20],
    "deleted_examples_back": back[:20],
    "journal_faults": faults_spec or None,
    "server_fault_lines": dict(sorted(fault_log.items())),
    "damaged_journal": dict(sorted(damage.items())),
    "writes_in_damaged_records": len(damaged),
    "of_those_in_a_quarantine_file": len(in_quarantine),
    "acknowledged_and_damaged_not_stored": sum(1 for i in damaged if acked.get(i) == "present" and i not in stored),
    "requests_by_status": dict(sorted(statuses.items())),
    "results_by_method": dict(sorted(methods.items())),
    "background_refits": dict(sorted(refits.items())),
    "llm_simulator": {k: v for k, v in sim_stats().items() if k in ("requests", "answered", "faults_5xx", "faults_429", "hangs")},
    # "seconds since start: MiB (kill -9 restarts so far)", about 30 samples
    "rss_mib_over_time": ", ".join(f"{t:.0f}s: {m:.0f} ({k})" for t, m, k in samples[::step]),
    "rss_mib_max": max((m for _, m, _ in samples), default=None),
}
print(json.dumps(summary, indent=1))
bad = summary["lost_writes"] or len(in_quarantine) != len(damaged)
bad = bad or any(k.startswith("readyz") and "naming" not in k and "after the file was moved" not in k for k in damage)
bad = bad or any(k.startswith("readyz") and k.endswith("after the file was moved") and not k.startswith("readyz 200") for k in damage)
if faults_spec and not fault_log["injecting journal faults"]:
    print("soak: journal faults were asked for but the server did not inject them (not a test-doubles build?)", file=sys.stderr)
    bad = True
sys.exit(1 if bad else 0)
PY
