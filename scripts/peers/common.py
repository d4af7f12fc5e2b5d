"""What the peer benchmarks share: the workloads' sizes, timing, and the JSON they print."""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHAIN = 200          # W1 / W5: a chain of 200 nodes, each appending one 100-character string
FAN = 1000           # W2: fan out to 1,000 tasks, then one join
RUNS, RUN_STEPS = 200, 10   # W3: 200 runs of a 10-node chain


def args(doc, workloads):
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(workloads))
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    a.only = [w.strip().lower() for w in a.only.split(",")]
    return a


def measure(label, fn, reps, count, unit):
    """One untimed warm-up, then `reps` timed calls of fn(); rates are count ÷ wall seconds."""
    fn()
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    rates = [count / w for w in walls]
    summary = {"wall_s": stat(walls), unit: stat(rates)}
    print(f"    {label}: {statistics.median(rates):,.0f} {unit.replace('_per_s', '/s')} "
          f"[{min(rates):,.0f}–{max(rates):,.0f}], wall {statistics.median(walls):.3f} s", flush=True)
    return {"summary": summary}


def stat(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def finish(a, peer, versions, workloads):
    out = {"peer": peer, "versions": versions, "reps": a.reps, "workloads": workloads}
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f, indent=2)
