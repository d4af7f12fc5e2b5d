"""The Python function every engine runs for W5 (and W1 in the peers): append one 100-character
string. Cairn serves it with its node library; LangGraph, Celery and Dask call it directly.

W5b: set W5_HEAVY_IMPORT=1 and importing this module takes 300 ms, as one that imports a large
library (numpy, openai, langchain) does.
"""
import os
import time

if os.environ.get("W5_HEAVY_IMPORT") == "1":
    time.sleep(0.3)

ITEM = "x" * 100


def step(i):
    """The write of chain node number i: exactly 100 characters."""
    return f"{i:04d}" + ITEM[4:]


try:
    import cairn
except ImportError:  # the peers do not need the library
    cairn = None

if cairn is not None:
    @cairn.node
    def node(state, input, ctx):
        return {"items": [step(int(ctx.node[1:]))]}

if __name__ == "__main__":
    cairn.run()
