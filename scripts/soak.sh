#!/usr/bin/env bash
# Soak test of `triage serve` on 127.0.0.1: classification load against a faulty
# simulated LLM (scripts/sim_llm.py: 5xx, 429 with Retry-After, hung requests), and
# examples posted and deleted while the server is killed with SIGKILL and restarted
# over and over. At the end every acknowledged write is checked against the store
# (a fresh `triage export`). Prints a JSON summary: acknowledged writes, lost writes
# (must be 0), requests by status, the server's RSS over time. Exit 1 if a write
# was lost.
#   scripts/soak.sh [SECONDS]                  (default 300, at most 540: with set-up, under 10 minutes)
# Env: TRIAGE_BIN (a built triage; default: release build here), SOAK_SEED (42),
#   SOAK_CLIENTS (classification clients, 4), SOAK_WRITERS (example writers, 2),
#   SOAK_FAULT_5XX (0.10), SOAK_FAULT_429 (0.10), SOAK_HANG (0.05), SOAK_HANG_SECONDS (4),
#   SOAK_KILL_MIN / SOAK_KILL_MAX (seconds between kills, 5 / 20), SIM_LLM (path of sim_llm.py),
#   SOAK_REFIT_AFTER (the server refits the calibrated collection in the background after
#   this many posted examples, 20).
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
import collections, http.client, json, os, random, signal, subprocess, sys, threading, time

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
rss = []                           # (seconds since start, MiB, restarts so far)
methods = collections.Counter()
start = time.monotonic()
deadline = start + seconds
restarts = 0

refits = collections.Counter()

def drain(stream):
    # Keep reading the server's log; count its background refits by outcome.
    for line in stream:
        for outcome in ("background refit done", "background refit failed", "background refit stopped"):
            if outcome in line:
                refits[outcome] += 1

def serve():
    p = subprocess.Popen([bin_, "serve", "--collection", "saas", "--addr", "127.0.0.1:0", "--llm-base-url", llm,
                          "--llm-timeout", "3", "--llm-deadline", "8", "--llm-retry-base-ms", "200", "--json-mode", "object",
                          "--refit-after", os.environ.get("SOAK_REFIT_AFTER", "20")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         # The refit's "done" line is at info level; everything else stays at warn.
                         env={**os.environ, "TRIAGE_LOG": "warn,qdrant_edge=error,ticket_triage::serve::refit=info"})
    for line in p.stderr:
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
                st, _ = request(state["url"], "POST", "/v1/examples", body)
            else:
                st, _ = request(state["url"], "DELETE", f"/v1/examples/{eid}")
        except Exception:
            with lock:
                statuses[f"examples no answer"] += 1
            return  # the server is gone; the next round starts new writers
        with lock:
            statuses[f"examples {op} {st}"] += 1
            if st == 200:
                unsure.discard(eid)
                acked[eid] = "present" if op == "post" else "absent"
                if op == "post":
                    mine.append(eid)

def rss_of(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None

while time.monotonic() < deadline:
    proc, url = serve()
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
lost = sorted(i for i, s in acked.items() if i not in unsure and s == "present" and i not in stored)
back = sorted(i for i, s in acked.items() if i not in unsure and s == "absent" and i in stored)
samples = [s for s in rss]
step = max(1, len(samples) // 30)
summary = {
    "seconds": round(time.monotonic() - start, 1),
    "kill_9_restarts": restarts,
    "acknowledged_writes": sum(v for k, v in statuses.items() if k.startswith("examples") and k.endswith(" 200")),
    "acknowledged_examples_present": sum(1 for i, s in acked.items() if s == "present" and i not in unsure),
    "acknowledged_deletes": sum(1 for i, s in acked.items() if s == "absent" and i not in unsure),
    "unanswered_writes": len(unsure),
    "lost_writes": len(lost) + len(back),
    "lost_examples": lost[:20],
    "deleted_examples_back": back[:20],
    "requests_by_status": dict(sorted(statuses.items())),
    "results_by_method": dict(sorted(methods.items())),
    "background_refits": dict(sorted(refits.items())),
    "llm_simulator": {k: v for k, v in sim_stats().items() if k in ("requests", "answered", "faults_5xx", "faults_429", "hangs")},
    # "seconds since start: MiB (kill -9 restarts so far)", about 30 samples
    "rss_mib_over_time": ", ".join(f"{t:.0f}s: {m:.0f} ({k})" for t, m, k in samples[::step]),
    "rss_mib_max": max((m for _, m, _ in samples), default=None),
}
print(json.dumps(summary, indent=1))
sys.exit(1 if summary["lost_writes"] else 0)
PY
