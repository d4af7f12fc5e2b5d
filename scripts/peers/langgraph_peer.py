#!/usr/bin/env python3
"""LangGraph peer: StateGraph + SqliteSaver (a file, durability "sync"), all in this process; with
PEERS_POSTGRES_URL set (scripts/bench --postgres), PostgresSaver (langgraph-checkpoint-postgres) on
that server instead, a fresh database per graph.

W6 (only when asked for): the agent ⇄ tool loop appending a 500-byte message per step, to 2,000
and 4,000 steps, once each (the checkpoints grow with the list: about 1 GB and 4 GB written).
W1/W5 call w5_node.step in each of 200 chain nodes; W5b is the same with the module's 300 ms
import (paid once here, at import: LangGraph runs in-process). W2 fans out with Send; W3 runs
200 threads of a 10-node chain one after another. Timed: graph.invoke only.
"""
import operator
import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from typing import Annotated, TypedDict

import common

a = common.args(__doc__, ["w1", "w2", "w3", "w5", "w5b"])  # and w6, when asked for (minutes)
if "w5b" in a.only:
    os.environ["W5_HEAVY_IMPORT"] = "1"   # the import below takes 300 ms, once
import w5_node  # noqa: E402

from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Send  # noqa: E402


class Chain(TypedDict):
    items: Annotated[list, operator.add]


def chain(n):
    g = StateGraph(Chain)
    for i in range(n):
        g.add_node(f"n{i}", (lambda i: lambda state: {"items": [w5_node.step(i)]})(i))
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


class Fan(TypedDict):
    done: Annotated[list, operator.add]
    total: int


def fan():
    g = StateGraph(Fan)
    g.add_node("fan", lambda s: {})
    g.add_node("one", lambda s: {"done": [1]})
    g.add_node("join", lambda s: {"total": len(s["done"])})
    g.add_edge(START, "fan")
    g.add_conditional_edges("fan", lambda s: [Send("one", {"i": i}) for i in range(common.FAN)])
    g.add_edge("one", "join")
    g.add_edge("join", END)
    return g


class Loop(TypedDict):
    messages: Annotated[list, operator.add]
    last: str
    count: Annotated[int, operator.add]


def loop(steps):
    import w6_node
    g = StateGraph(Loop)

    def agent(s):
        n = int((s.get("last") or "start 0").split()[1]) + 1
        return {"messages": [w6_node.message("agent", n)], "last": w6_node.message("agent", n), "count": 1}

    def tool(s):
        n = int(s["last"].split()[1])
        return {"messages": [w6_node.message("tool", n)], "last": w6_node.message("tool", n)}
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: END if s["count"] >= steps // 2 else "tool")
    g.add_edge("tool", "agent")
    return g


work = tempfile.mkdtemp(prefix="cairn-peer-lg-")
counter = [0]


POSTGRES = os.environ.get("PEERS_POSTGRES_URL")


def saver():
    counter[0] += 1
    if POSTGRES:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        name = f"lg_{os.getpid()}_{counter[0]}"
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        # As PostgresSaver.from_conn_string connects, kept open for the graph's life.
        conn = psycopg.connect(POSTGRES.rsplit("/", 1)[0] + "/" + name, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        s = PostgresSaver(conn)
        s.setup()
        return s
    conn = sqlite3.connect(os.path.join(work, f"db{counter[0]}.sqlite"), check_same_thread=False)
    s = SqliteSaver(conn)
    s.setup()
    return s


def invoke(g, state, runs=1):
    compiled = g.compile(checkpointer=saver())
    for r in range(runs):
        out = compiled.invoke(state, {"configurable": {"thread_id": f"t{r}"}}, durability="sync")
    return out


results = {}
print(f"==> LangGraph {version('langgraph')} + {'PostgresSaver' if POSTGRES else 'SqliteSaver'}, durability sync")
try:
    for w in a.only:
        if w in ("w1", "w5", "w5b"):
            g = chain(common.CHAIN)
            def run():
                assert len(invoke(g, {"items": []})["items"]) == common.CHAIN
            results[w] = common.measure(w, run, a.reps, common.CHAIN, "steps_per_s")
        elif w == "w2":
            g = fan()
            def run():
                assert invoke(g, {"done": []})["total"] == common.FAN
            results[w] = common.measure(w, run, a.reps, common.FAN, "tasks_per_s")
        elif w == "w6":
            import time
            out = {}
            for steps in (2000, 4000):
                compiled = loop(steps).compile(checkpointer=saver())
                path = os.path.join(work, f"db{counter[0]}.sqlite")
                t0 = time.perf_counter()
                r = compiled.invoke({"messages": [], "last": "", "count": 0},
                                    {"configurable": {"thread_id": "w6"}, "recursion_limit": steps + 10}, durability="sync")
                wall = time.perf_counter() - t0
                assert len(r["messages"]) == steps - 1
                size = sum(os.path.getsize(path + x) for x in ("", "-wal") if os.path.exists(path + x))
                out[str(steps)] = {"wall_s": wall, "steps_per_s": steps / wall, "bytes_stored": size}
                print(f"    w6 {steps} steps: {steps / wall:,.0f} steps/s, {size:,} bytes stored", flush=True)
                os.remove(path)
            results[w] = {"summary": {}, "steps": out}
        elif w == "w3":
            g = chain(common.RUN_STEPS)
            results[w] = common.measure(w, lambda: invoke(g, {"items": []}, runs=common.RUNS), a.reps, common.RUNS, "runs_per_s")
finally:
    shutil.rmtree(work, ignore_errors=True)
saver_package = "langgraph-checkpoint-postgres" if POSTGRES else "langgraph-checkpoint-sqlite"
common.finish(a, "langgraph", {"langgraph": version("langgraph"), saver_package: version(saver_package)}, results)
