#!/usr/bin/env bash
# Requests per second on /health/ over each server kind's socket, side by side in one
# run, on web1 of the test lab after the appservers scenario's converge. The client
# runs on the same 2-core host as the servers, so compare the rows, not absolutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
key=/var/lib/webstack-lab/ssh/id_ed25519
ssh_web1=(ssh -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@10.231.0.11)

trap 'molecule destroy --all >/dev/null 2>&1 || true' EXIT
molecule destroy --all >/dev/null
molecule create -s appservers >/dev/null
molecule prepare -s appservers >/dev/null
molecule converge -s appservers >/dev/null

"${ssh_web1[@]}" "cat > /tmp/bench_socket.py" < tools/bench_socket.py
targets="/run/wsync/blue-gunicorn.sock /run/wgthread/blue-gunicorn.sock /run/wuvw/blue-gunicorn.sock \
/run/wasgi/blue-gunicorn.sock /run/auv/blue-uvicorn.sock /run/adaphne/blue-daphne-1.sock"
echo "# /health/ over each unit's socket on web1 (Debian 12), 8 keep-alive clients, 5 s each"
echo "# workers: gunicorn sync/gthread 2 (gthread 4 threads), UvicornWorker 1, asgi 1, uvicorn 2, daphne 1 instance"
"${ssh_web1[@]}" "/srv/demoapp/.venv/bin/python /tmp/bench_socket.py $targets" | tee build/bench-appservers.jsonl
