#!/usr/bin/env python3
"""Celery peer: Redis broker and result backend, one worker node with 2 prefork processes.

W1/W5: a chain of 200 tasks, each calling w5_node.step and passing the list on; W5b the same
with the module's 300 ms import (paid once per pool process, in the warm-up). W2: a chord of
1,000 tasks and a join; W3: 200 chains of 10, all sent, then all awaited.
Needs PEERS_REDIS_URL (scripts/bench --peers starts a Redis and sets it).
"""
import os
import subprocess
import sys
import time
from importlib.metadata import version

import common

a = common.args(__doc__, ["w1", "w2", "w3", "w5", "w5b"])
os.environ["PYTHONPATH"] = common.HERE + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
from celery import chain, chord, group  # noqa: E402

import celery_tasks as t  # noqa: E402


def worker(env):
    p = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool", "prefork",
                          "--concurrency", "2", "--loglevel", "warning", "--without-gossip", "--without-mingle"],
                         cwd=common.HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        if t.app.control.inspect(timeout=0.5).ping():
            return p
    p.kill()
    raise SystemExit("the Celery worker did not start")


results = {}
print(f"==> Celery {version('celery')}, Redis broker and backend, prefork × 2")
t.app.control.purge()
for w in a.only:
    env = dict(os.environ, W5_HEAVY_IMPORT="1" if w == "w5b" else "0")
    p = worker(env)
    try:
        if w in ("w1", "w5", "w5b"):
            def run():
                c = chain([t.append.s([], 0)] + [t.append.s(i) for i in range(1, common.CHAIN)])
                assert len(c.apply_async().get(timeout=300)) == common.CHAIN
            results[w] = common.measure(w, run, a.reps, common.CHAIN, "steps_per_s")
        elif w == "w2":
            def run():
                r = chord(group(t.one.s(i) for i in range(common.FAN)))(t.join.s())
                assert r.get(timeout=300) == common.FAN
            results[w] = common.measure(w, run, a.reps, common.FAN, "tasks_per_s")
        elif w == "w3":
            def run():
                rs = [chain([t.append.s([], 0)] + [t.append.s(i) for i in range(1, common.RUN_STEPS)]).apply_async()
                      for _ in range(common.RUNS)]
                assert all(len(r.get(timeout=300)) == common.RUN_STEPS for r in rs)
            results[w] = common.measure(w, run, a.reps, common.RUNS, "runs_per_s")
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
common.finish(a, "celery", {"celery": version("celery")}, results)
