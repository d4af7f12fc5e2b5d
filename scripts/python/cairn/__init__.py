"""Cairn nodes in Python.

    import cairn

    @cairn.node
    def draft(state, input, ctx):
        ctx.progress({"stage": "outline"})
        answer = ctx.interrupt({"question": "Approve?"})   # pauses the run; returns the answer
        return {"draft": "...", "approved": answer}          # the writes

    if __name__ == "__main__":
        cairn.run()

The graph runs the file with `run: exec`, `command: [python3, nodes.py]`; with `serve: true`
one process takes task after task (imports paid once). The same file works both ways: `run()`
answers every task line on stdin until stdin closes.
"""
from ._runtime import (
    Context,
    Fatal,
    Result,
    Retry,
    Send,
    node,
    registry,
    run,
    handle,
)

__all__ = ["Context", "Fatal", "Result", "Retry", "Send", "node", "registry", "run", "handle"]
__version__ = "0.1.0"
