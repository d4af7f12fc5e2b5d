#!/usr/bin/env python3
"""LangGraph peer: StateGraph + SqliteSaver (a file, durability "sync"), all in this process.

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

a = common.args(__doc__, ["w1", "w2", "w3", "w5", "w5b"])
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


work = tempfile.mkdtemp(prefix="cairn-peer-lg-")
counter = [0]


def saver():
    counter[0] += 1
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
print(f"==> LangGraph {version('langgraph')} + SqliteSaver, durability sync")
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
        elif w == "w3":
            g = chain(common.RUN_STEPS)
            results[w] = common.measure(w, lambda: invoke(g, {"items": []}, runs=common.RUNS), a.reps, common.RUNS, "runs_per_s")
finally:
    shutil.rmtree(work, ignore_errors=True)
common.finish(a, "langgraph", {"langgraph": version("langgraph"), "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite")}, results)
