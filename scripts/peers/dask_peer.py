#!/usr/bin/env python3
"""Dask peer: dask.distributed LocalCluster, 2 worker processes × 1 thread, no store.

W1/W5: a chain of 200 futures, each calling w5_node.step on its predecessor's list; W5b the
same with the module's 300 ms import (paid once per worker process, in the warm-up). W2: 1,000
futures and one join; W3: 200 chains of 10, all submitted, then all gathered.
"""
import os
from importlib.metadata import version

import common

a = common.args(__doc__, ["w1", "w2", "w3", "w5", "w5b"])
# Worker processes inherit this environment: they import w5_node from here.
os.environ["PYTHONPATH"] = common.HERE + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


def append(items, i):
    import w5_node
    return items + [w5_node.step(i)]


def one(i):
    return 1


def join(done):
    return sum(done)


def main():
    from dask.distributed import Client, LocalCluster
    results = {}
    print(f"==> Dask distributed {version('distributed')}, LocalCluster 2 processes × 1 thread")
    for w in a.only:
        if w == "w5b":
            os.environ["W5_HEAVY_IMPORT"] = "1"   # fresh workers: each pays the import once
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            def chain(n, key):
                f = []
                for i in range(n):
                    f = client.submit(append, f, i, key=f"{key}-{i}", pure=False)
                return f
            if w in ("w1", "w5", "w5b"):
                def run():
                    assert len(chain(common.CHAIN, "c").result()) == common.CHAIN
                results[w] = common.measure(w, run, a.reps, common.CHAIN, "steps_per_s")
            elif w == "w2":
                def run():
                    parts = client.map(one, range(common.FAN), pure=False)
                    assert client.submit(join, parts, pure=False).result() == common.FAN
                results[w] = common.measure(w, run, a.reps, common.FAN, "tasks_per_s")
            elif w == "w3":
                def run():
                    ends = [chain(common.RUN_STEPS, f"r{r}") for r in range(common.RUNS)]
                    assert all(len(x) == common.RUN_STEPS for x in client.gather(ends))
                results[w] = common.measure(w, run, a.reps, common.RUNS, "runs_per_s")
        os.environ.pop("W5_HEAVY_IMPORT", None)
    common.finish(a, "dask", {"distributed": version("distributed")}, results)


if __name__ == "__main__":
    main()
