"""The exec protocol, so a node author writes only functions.

A task is one JSON line on stdin; the answer is `{"progress": ...}` lines, then one result line
on the real stdout. `print()` inside a node goes to stderr (the protocol owns stdout), and so
does a traceback. See Sources/CairnWorker/ExecHandler.swift for the other side.
"""
import inspect
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

__all__ = ["Context", "Fatal", "Result", "Retry", "Send", "node", "registry", "run", "handle"]

_ERROR_TAIL = 2000

# Exceptions that mean the code or its input is wrong: running it again gives the same answer.
# (The same split LangGraph's default retry policy makes.)
_NOT_RETRYABLE = (
    ValueError, TypeError, ArithmeticError, ImportError, LookupError, NameError, SyntaxError,
    RuntimeError, ReferenceError, StopIteration, StopAsyncIteration, AttributeError,
    AssertionError, NotImplementedError,
)


class Fatal(Exception):
    """Raise to fail the task with no retry, whatever the node's retry policy."""


class Retry(Exception):
    """Raise to fail the attempt and let the node's retry policy run it again."""


@dataclass
class Send:
    """A task for `node` with its own `input` (fan-out), started in the next step."""
    node: str
    input: Any = None


@dataclass
class Result:
    """Everything a node may answer. Returning a plain dict means `Result(writes=that_dict)`."""
    writes: Dict[str, Any] = field(default_factory=dict)
    goto: Union[str, Sequence[str], None] = None
    sends: List[Send] = field(default_factory=list)
    metrics: Dict[str, float] = field(default_factory=dict)


class _Interrupted(BaseException):
    # BaseException, so that a node's own `except Exception` does not swallow the pause.
    def __init__(self, payload):
        super().__init__("interrupted")
        self.payload = payload


class Context:
    """What a node knows about its task besides the state and its input."""

    def __init__(self, task: Dict[str, Any], emit: Callable[[Dict[str, Any]], None]):
        self.run_id: str = task.get("run_id", "")
        self.task_id: str = task.get("task_id", "")
        """The same for every attempt of the task: use it as the idempotency key of side effects."""
        self.attempt: int = int(task.get("attempt", 1))
        self.node: str = task.get("node", "")
        self.params: Dict[str, Any] = task.get("params") or {}
        """The node's `with:` mapping in the graph file."""
        self.config: Dict[str, Any] = task.get("config") or {}
        self.last_progress: Any = task.get("progress")
        """What an earlier attempt reported with `progress()`, so a retry can continue from there."""
        self.resumes: List[Any] = list(task.get("resumes") or ([task["resume"]] if "resume" in task else []))
        self._asked = 0
        self._emit = emit
        self.metrics: Dict[str, float] = {}
        self.api_calls: List[Dict[str, Any]] = []
        self.assets: List[Dict[str, Any]] = []

    def progress(self, value: Any) -> None:
        """Reports progress now (shown by `cairn watch`, handed to a retry as `last_progress`)."""
        self._emit({"progress": value})

    def interrupt(self, payload: Any) -> Any:
        """Pauses the run with `payload` for a person, and returns their answer.

        The node runs again from its start when the run is resumed; this call then returns the
        answer instead of pausing (the n-th call returns the n-th answer), as LangGraph's
        `interrupt()` does. Code before it runs again, so keep side effects after it or
        idempotent (`task_id` is stable).
        """
        i = self._asked
        self._asked += 1
        if i < len(self.resumes):
            return self.resumes[i]
        raise _Interrupted(payload)

    def add_metrics(self, **values: float) -> None:
        """Adds to the attempt's metrics (cost, api_calls, tokens_in, ...), kept even if it fails."""
        for k, v in values.items():
            self.metrics[k] = self.metrics.get(k, 0) + v

    def record_api_call(self, provider: str, model: str = "", operation: str = "", tokens_in: int = 0,
                        tokens_out: int = 0, cost: float = 0.0, latency_ms: float = 0.0, status: str = "ok") -> None:
        """Logs one call to an outside API, kept with the attempt even if it fails.

        The attempt's `cost`, `api_calls`, `tokens_in` and `tokens_out` are summed from the log
        unless `add_metrics` set them. `cairn stats --by model` reads the log back.
        """
        self.api_calls.append({"provider": provider, "model": model, "operation": operation,
                               "tokens_in": int(tokens_in), "tokens_out": int(tokens_out), "cost": float(cost),
                               "latency_ms": float(latency_ms), "status": str(status)})

    def add_asset(self, uri: str, name: Optional[str] = None, kind: str = "", path: Optional[str] = None,
                  bytes: Optional[int] = None, sha256: Optional[str] = None, meta: Any = None) -> None:
        """Reports a file or object the attempt produced (`cairn assets RUN`, or `--uri` to find it).

        With `path`, its size and SHA-256 are read from that file (unless given).
        """
        if path is not None and (bytes is None or sha256 is None):
            import hashlib
            h, n = hashlib.sha256(), 0
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                    n += len(chunk)
            bytes = n if bytes is None else bytes
            sha256 = h.hexdigest() if sha256 is None else sha256
        a: Dict[str, Any] = {"uri": uri, "name": name or uri, "kind": kind}
        if bytes is not None:
            a["bytes"] = int(bytes)
        if sha256 is not None:
            a["sha256"] = sha256
        if meta is not None:
            a["meta"] = meta
        self.assets.append(a)

    def _attach(self, out: Dict[str, Any]) -> Dict[str, Any]:
        if self.metrics:
            out["metrics"] = {**self.metrics, **out.get("metrics", {})}
        if self.api_calls:
            out["api_calls"] = self.api_calls
        if self.assets:
            out["assets"] = self.assets
        return out


@dataclass
class _Node:
    fn: Callable
    arity: int
    retry_on: Optional[tuple]
    is_async: bool


registry: Dict[str, _Node] = {}
"""Node name -> function, filled by @node."""


def node(fn=None, *, name: Optional[str] = None, retry_on: Optional[Sequence[type]] = None):
    """Registers a node function `(state, input, ctx)`; it may take fewer leading parameters.

    It returns a dict of writes, a `Result`, or None. `name` defaults to the function's name and
    matches the graph's node name; a file with one node serves any node name. `retry_on` lists
    the exception types worth another attempt (default: all but programming errors and `Fatal`).
    """
    def register(f):
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        registry[name or f.__name__] = _Node(f, min(len(params), 3), tuple(retry_on) if retry_on else None,
                                             inspect.iscoroutinefunction(f))
        return f
    return register(fn) if fn is not None else register


def _retryable(entry: Optional[_Node], e: BaseException) -> bool:
    if isinstance(e, Fatal):
        return False
    if isinstance(e, Retry):
        return True
    if entry is not None and entry.retry_on is not None:
        return isinstance(e, entry.retry_on)
    return not isinstance(e, _NOT_RETRYABLE)


def _answer(value: Any) -> Dict[str, Any]:
    if value is None:
        return {"writes": {}}
    if isinstance(value, Result):
        out: Dict[str, Any] = {"writes": value.writes}
        if value.goto is not None:
            out["goto"] = value.goto
        if value.sends:
            out["sends"] = [{"node": s.node, "input": s.input} for s in value.sends]
        if value.metrics:
            out["metrics"] = value.metrics
        return out
    if isinstance(value, dict):
        return {"writes": value}
    raise Fatal(f"a node returns a dict of writes, a cairn.Result or None, not {type(value).__name__}")


_loop = None  # an asyncio event loop, made for the first async node (asyncio is slow to import)


class _StateMismatch(Exception):
    pass


class _KeptState:
    """The channel values a served process keeps between tasks, as the worker directs.

    A served process that says so (its result lines carry "state_cache": true) is sent, instead
    of the whole state, per channel: the value (kept unless "keep" is false), the items appended
    since the version it keeps, or nothing when the kept value is current; and the runs to drop.
    So a node that reads a long `messages` list gets it without the list being sent and parsed
    again at every step. The node gets its own shallow copies: appending to or replacing items of
    a list it was given does not change what is kept (do not mutate the items themselves)."""

    def __init__(self):
        self.runs: Dict[str, Dict[str, list]] = {}

    def state(self, task: Dict[str, Any]) -> Dict[str, Any]:
        for run_id in task.get("state_evict") or ():
            self.runs.pop(run_id, None)
        parts = task.get("state_parts")
        if parts is None:
            return task.get("state") or {}
        run_id = task.get("run_id", "")
        kept = self.runs.pop(run_id, {})
        state: Dict[str, Any] = {}
        try:
            for p in parts:
                name, version = p["channel"], p["version"]
                if "whole" in p:
                    value = p["whole"]
                    if p.get("keep", True):
                        kept[name] = [version, value]
                    else:
                        kept.pop(name, None)
                elif "append" in p:
                    held = kept.get(name)
                    if held is None or held[0] != p.get("base") or not isinstance(held[1], list):
                        raise _StateMismatch(f"channel {name!r}: items to append after version {p.get('base')}, which this process does not hold")
                    held[1].extend(p["append"])
                    held[0] = version
                    value = held[1]
                else:
                    held = kept.get(name)
                    if held is None or held[0] != version:
                        raise _StateMismatch(f"channel {name!r}: version {version} should be kept here and is not")
                    value = held[1]
                state[name] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        except _StateMismatch:
            kept = {}
            raise
        finally:
            if kept:
                self.runs[run_id] = kept
        return state


_kept = _KeptState()


def handle(task: Dict[str, Any], emit: Callable[[Dict[str, Any]], None] = lambda _: None) -> Dict[str, Any]:
    """Runs one task and returns its result line (as a dict). Never raises for a node's error."""
    global _loop
    ctx = Context(task, emit)
    name = ctx.node
    entry = registry.get(name)
    if entry is None and len(registry) == 1:
        entry = next(iter(registry.values()))
    if entry is None:
        known = ", ".join(sorted(registry)) or "none (decorate a function with @cairn.node)"
        return {"error": f"no node function named '{name}' in this program (it has: {known})",
                "kind": "no_node", "retryable": False}
    try:
        state = _kept.state(task)
    except _StateMismatch as e:
        return {"error": f"state cache: {e}", "kind": "state_cache", "retryable": True}
    args = [state, task.get("input"), ctx][: entry.arity]
    try:
        if entry.is_async:
            if _loop is None:
                import asyncio
                _loop = asyncio.new_event_loop()
            value = _loop.run_until_complete(entry.fn(*args))
        else:
            value = entry.fn(*args)
        return ctx._attach(_answer(value))
    except _Interrupted as i:
        return ctx._attach({"writes": {}, "interrupt": i.payload})
    except Exception as e:  # noqa: BLE001 - every node error becomes the task's failure
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        return ctx._attach({"error": text.strip()[-_ERROR_TAIL:], "kind": type(e).__name__, "retryable": _retryable(entry, e)})


def _watch_parent() -> None:
    # A node program outlives nothing: when the worker dies (even by kill -9) the program is
    # re-parented, and this ends it, mid-task or idle. (stdin's end only shows between tasks.)
    # A poll, not prctl(PR_SET_PDEATHSIG): that signal follows the parent *thread* that spawned
    # the program, and the worker's spawning threads come and go.
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(70)
    threading.Thread(target=watch, name="cairn-parent-watch", daemon=True).start()


def run() -> None:
    """Answers every task line on stdin, one after another, until stdin closes."""
    # The protocol owns the real stdout; everything else written to fd 1 (print, C extensions)
    # goes to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _watch_parent()

    def emit(obj):
        sys.stderr.flush()
        proto.write(json.dumps(obj, separators=(",", ":")) + "\n")
        proto.flush()

    served = os.environ.get("CAIRN_SERVE") == "1"
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except ValueError as e:
            emit({"error": f"the task line is not JSON: {e}", "kind": "bad_task", "retryable": False})
            continue
        answer = handle(task, emit)
        if served:
            answer["state_cache"] = True  # this process keeps state: send it what changed
        emit(answer)
