# Shared helpers for scripts/: sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CAIRN_BIN:-$ROOT/.build/debug}"
# Node programs import the repository's Python library (scripts/python) without installing it.
export PYTHONPATH="$ROOT/scripts/python${PYTHONPATH:+:$PYTHONPATH}"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT [SECONDS]
wait_for_port() {
  local port=$1 limit=${2:-20} i=0
  while ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    i=$((i + 1))
    ((i > limit * 10)) && { echo "nothing listening on port $port after ${limit}s" >&2; return 1; }
    sleep 0.1
  done
}
