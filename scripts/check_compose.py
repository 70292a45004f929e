"""Structural check of docker-compose.yml: what docs/scaling.md relies on.

    python3 scripts/check_compose.py docker-compose.yml [--resolved CONFIG_OUTPUT]

--resolved takes the output of `docker compose config` (variables interpolated) and checks
the resolved values too. Prints one line per failed check and exits 1 if any failed.
"""
import re
import sys

import yaml


def env_map(env):
    """Compose allows a mapping or a list of KEY=VALUE."""
    if isinstance(env, dict):
        return {k: ("" if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def check(doc, resolved):
    errors = []

    def need(cond, msg):
        if not cond:
            errors.append(msg)

    services = doc.get("services") or {}
    need(set(services) >= {"qdrant", "triage"}, f"services qdrant and triage expected, found {sorted(services)}")
    q = services.get("qdrant") or {}
    t = services.get("triage") or {}

    image = str(q.get("image", ""))
    need(image.startswith("qdrant/qdrant:"), f"qdrant: image {image!r} is not qdrant/qdrant")
    m = re.search(r"v?(\d+)\.(\d+)", image)
    need(m is not None and (int(m.group(1)), int(m.group(2))) >= (1, 16),
         f"qdrant: image {image!r}: collection metadata (where triage keeps taxonomy and model) needs Qdrant 1.16 or later")
    volumes = [str(v) if not isinstance(v, dict) else f"{v.get('source')}:{v.get('target')}" for v in q.get("volumes") or []]
    storage = [v for v in volumes if v.split(":")[1:2] == ["/qdrant/storage"]]
    need(storage, "qdrant: no volume mounted at /qdrant/storage (the collections would die with the container)")
    for v in storage:
        name = v.split(":")[0]
        if not name.startswith((".", "/")):
            need(name in (doc.get("volumes") or {}), f"qdrant: named volume {name!r} is not declared under volumes:")
    hc = q.get("healthcheck") or {}
    test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) else str(hc.get("test", ""))
    need("/readyz" in test, "qdrant: no health check on /readyz (triage's depends_on waits for it)")
    qenv = env_map(q.get("environment"))
    need("QDRANT__SERVICE__API_KEY" in qenv, "qdrant: no QDRANT__SERVICE__API_KEY: the server would accept anyone")
    for p in q.get("ports") or []:
        p = str(p) if not isinstance(p, dict) else f"{p.get('host_ip', '')}:{p.get('published')}:{p.get('target')}"
        need(p.startswith("127.0.0.1:"), f"qdrant: port {p!r} is published beyond loopback")

    need("build" in t, "triage: no build: (the image comes from the Dockerfile)")
    dep = t.get("depends_on") or {}
    cond = dep.get("qdrant", {}).get("condition") if isinstance(dep, dict) else None
    need(cond == "service_healthy", f"triage: depends_on qdrant condition is {cond!r}, not service_healthy")
    tenv = env_map(t.get("environment"))
    need(tenv.get("QDRANT_URL") == "http://qdrant:6334", f"triage: QDRANT_URL is {tenv.get('QDRANT_URL')!r}, not the gRPC port http://qdrant:6334")
    need(tenv.get("TRIAGE_ADDR", "").endswith(":8080"), "triage: TRIAGE_ADDR does not listen on :8080")
    if not resolved:
        # (`config` inlines env files into environment:)
        env_file = t.get("env_file")
        files = [env_file] if isinstance(env_file, (str, dict)) else (env_file or [])
        names = [f if isinstance(f, str) else f.get("path") for f in files]
        need(any(str(n).endswith(".env") for n in names), "triage: env_file does not include .env (keys come from there)")
    else:
        need(qenv.get("QDRANT__SERVICE__API_KEY", "").strip() != "", "resolved: the Qdrant API key is empty")
    return errors


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    path = args[0]
    errors = [f"{path}: {e}" for e in check(yaml.safe_load(open(path)), resolved=False)]
    if "--resolved" in args:
        rpath = args[args.index("--resolved") + 1]
        errors += [f"{rpath} (resolved): {e}" for e in check(yaml.safe_load(open(rpath)), resolved=True)]
    for e in errors:
        print(f"check-compose: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check-compose: structure of {path} as docs/scaling.md describes it")


if __name__ == "__main__":
    main()
