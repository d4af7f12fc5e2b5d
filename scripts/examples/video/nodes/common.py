"""Shared helpers for the example's node programs: the exec protocol in a few lines.

A node program reads one JSON object on stdin and prints JSON lines on stdout:
{"progress": ...} lines while it works, then one result line with "writes" and "metrics".
"""
import json
import os
import random
import sys
import time

DELAY = float(os.environ.get("CAIRN_DEMO_DELAY", "1.0"))  # scale simulated latency (0 = instant)


def task():
    return json.load(sys.stdin)


def progress(value):
    print(json.dumps({"progress": value}), flush=True)


def work(seconds):
    """Pretend to call a model for about `seconds` (scaled by CAIRN_DEMO_DELAY)."""
    time.sleep(max(0.0, seconds * DELAY * random.uniform(0.7, 1.3)))


def ask(question):
    """Pause the run with a question for a person; the node runs again with the answer as "resume"."""
    print(json.dumps({"interrupt": question}), flush=True)


def done(writes, cost=0.0, api_calls=0, **extra):
    result = {"writes": writes, "metrics": {"cost": round(cost, 4), "api_calls": api_calls}}
    result.update(extra)
    print(json.dumps(result), flush=True)
