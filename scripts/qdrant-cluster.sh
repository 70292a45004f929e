#!/usr/bin/env bash
# Local Qdrant on loopback, for tests and benchmarks: a 3-node cluster in distributed mode
# (node 1 bootstraps the others), or one plain node. Every node gets free ports and its own
# storage under DIR; nothing outside DIR is written.
#
#   scripts/qdrant-cluster.sh start DIR [--nodes N] [--single]   # default: 3 nodes, distributed
#   scripts/qdrant-cluster.sh stop DIR                            # stops every node (DIR is kept)
#   scripts/qdrant-cluster.sh node-stop DIR I [--kill]            # SIGTERM (or SIGKILL) node I
#   scripts/qdrant-cluster.sh node-start DIR I                    # restart node I on its storage and ports
#   scripts/qdrant-cluster.sh status DIR                          # peers and leader seen by each node
#
# `start` writes DIR/env (shell syntax) and prints it: QDRANT_URL (gRPC of node 1, what
# triage takes), QDRANT_HTTP (REST of node 1) and NODE<i>_GRPC / NODE<i>_HTTP / NODE<i>_P2P
# for each node. `--single` starts one node with clustering off (a plain server).
#
# The server binary: $QDRANT_BIN, else ../shared/bin/qdrant beside the repository (a
# stand-in for `docker compose up qdrant`: no Qdrant is fetched here). Without one the
# script says so and exits with status 3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { echo "qdrant-cluster: $*" >&2; exit 1; }

qdrant_bin() {
    local bin="${QDRANT_BIN:-$root/../shared/bin/qdrant}"
    if [ ! -x "$bin" ]; then
        echo "qdrant-cluster: no Qdrant server binary at $bin (set QDRANT_BIN to one)" >&2
        exit 3
    fi
    (cd "$(dirname "$bin")" && echo "$(pwd)/$(basename "$bin")")
}

# N free loopback ports, one per line (bound and released; another process could take one
# in between, which start detects as a node that never gets ready).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# Start node I from DIR/env (ports) and DIR/node<I> (storage); returns at once.
launch() {
    local dir="$1" i="$2" bin
    bin="$(qdrant_bin)"
    # shellcheck disable=SC1091
    . "$dir/env"
    local http grpc p2p node="$dir/node$i"
    http="$(eval echo "\$NODE${i}_HTTP")"
    grpc="$(eval echo "\$NODE${i}_GRPC")"
    p2p="$(eval echo "\$NODE${i}_P2P")"
    mkdir -p "$node/storage" "$node/snapshots" "$node/run"
    local args=()
    if [ "$CLUSTER" = true ]; then
        args+=(--uri "http://127.0.0.1:$p2p")
        # Node 1 is the first peer; the others join through it. A restarted node finds its
        # peers in its own storage and ignores --bootstrap.
        [ "$i" = 1 ] || args+=(--bootstrap "http://127.0.0.1:$NODE1_P2P")
    fi
    # An empty working folder: qdrant reads config/config.yaml relative to it if present.
    (
        cd "$node/run"
        QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT="$http" QDRANT__SERVICE__GRPC_PORT="$grpc" \
        QDRANT__STORAGE__STORAGE_PATH="$node/storage" QDRANT__STORAGE__SNAPSHOTS_PATH="$node/snapshots" \
        QDRANT__TELEMETRY_DISABLED=true QDRANT__CLUSTER__ENABLED="$CLUSTER" QDRANT__CLUSTER__P2P__PORT="$p2p" \
        QDRANT__LOG_LEVEL="${QDRANT_LOG_LEVEL:-WARN}" \
            nohup "$bin" "${args[@]}" >>"$node/qdrant.log" 2>&1 </dev/null &
        echo $! >"$node/pid"
    )
}

# Wait until node I answers /readyz (and, in a cluster, sees PEERS peers and a leader).
wait_ready() {
    local dir="$1" i="$2" peers="$3" timeout="${4:-60}"
    . "$dir/env"
    local http pid
    http="$(eval echo "\$NODE${i}_HTTP")"
    pid="$(cat "$dir/node$i/pid")"
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || die "node $i (pid $pid) exited; see $dir/node$i/qdrant.log: $(tail -n 3 "$dir/node$i/qdrant.log")"
        if curl -sf "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then
            if [ "$CLUSTER" != true ]; then return 0; fi
            if curl -sf "http://127.0.0.1:$http/cluster" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["result"]
sys.exit(0 if len(r["peers"]) == int(sys.argv[1]) and r["raft_info"].get("leader") else 1)' "$peers"; then
                return 0
            fi
        fi
        sleep 0.2
    done
    die "node $i not ready after ${timeout}s; see $dir/node$i/qdrant.log"
}

stop_node() {
    local dir="$1" i="$2" signal="${3:-TERM}" pidfile="$1/node$2/pid"
    [ -f "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    fi
    rm -f "$pidfile"
}

cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 2; }
shift 2

case "$cmd" in
start)
    NODES=3
    CLUSTER=true
    while [ $# -gt 0 ]; do
        case "$1" in
        --nodes) NODES="$2"; shift 2 ;;
        --single) NODES=1; CLUSTER=false; shift ;;
        *) die "unknown option $1" ;;
        esac
    done
    qdrant_bin >/dev/null
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    [ ! -f "$dir/env" ] || die "$dir already holds a cluster (stop it and use another folder)"
    mapfile -t ports < <(free_ports $((NODES * 3)))
    {
        echo "NODES=$NODES"
        echo "CLUSTER=$CLUSTER"
        for i in $(seq 1 "$NODES"); do
            b=$(((i - 1) * 3))
            echo "NODE${i}_HTTP=${ports[$b]}"
            echo "NODE${i}_GRPC=${ports[$((b + 1))]}"
            echo "NODE${i}_P2P=${ports[$((b + 2))]}"
        done
        echo "QDRANT_URL=http://127.0.0.1:${ports[1]}"
        echo "QDRANT_HTTP=http://127.0.0.1:${ports[0]}"
    } >"$dir/env"
    launch "$dir" 1
    # The others bootstrap from node 1's p2p port: it must be up (its own leader) first.
    wait_ready "$dir" 1 1
    # One at a time: each join is a consensus change.
    for i in $(seq 2 "$NODES"); do launch "$dir" "$i"; wait_ready "$dir" "$i" "$i"; done
    for i in $(seq 1 "$NODES"); do wait_ready "$dir" "$i" "$NODES"; done
    cat "$dir/env"
    ;;
stop)
    [ -f "$dir/env" ] || exit 0
    . "$dir/env"
    for i in $(seq 1 "$NODES"); do stop_node "$dir" "$i" & done
    wait
    ;;
node-stop)
    i="${1:?node number}"
    signal=TERM
    [ "${2:-}" = --kill ] && signal=KILL
    stop_node "$dir" "$i" "$signal"
    ;;
node-start)
    i="${1:?node number}"
    . "$dir/env"
    [ ! -f "$dir/node$i/pid" ] || ! kill -0 "$(cat "$dir/node$i/pid")" 2>/dev/null || die "node $i is running"
    launch "$dir" "$i"
    wait_ready "$dir" "$i" "$NODES"
    ;;
status)
    . "$dir/env"
    for i in $(seq 1 "$NODES"); do
        http="$(eval echo "\$NODE${i}_HTTP")"
        printf 'node %s (http %s): ' "$i" "$http"
        curl -sf "http://127.0.0.1:$http/cluster" || echo "down"
        echo
    done
    ;;
*) die "unknown command $cmd" ;;
esac
