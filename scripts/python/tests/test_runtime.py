"""Tests of the node library: `handle` for each kind of answer, and `run` as the worker drives it
(real processes, stdin/stdout pipes). Run: python3 -m unittest discover -s scripts/python/tests"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.dirname(HERE)
sys.path.insert(0, LIB)

import cairn  # noqa: E402


def task(node="n", **kw):
    t = {"run_id": "r-1", "task_id": "t-1", "attempt": 1, "node": node, "state": {}, "input": None}
    t.update(kw)
    return t


class HandleTests(unittest.TestCase):
    def setUp(self):
        cairn.registry.clear()

    def test_dict_is_the_writes_and_none_is_nothing(self):
        @cairn.node
        def a(state):
            return {"x": state["x"] + 1}

        @cairn.node
        def b(state, input, ctx):
            return None
        self.assertEqual(cairn.handle(task("a", state={"x": 1})), {"writes": {"x": 2}})
        self.assertEqual(cairn.handle(task("b")), {"writes": {}})

    def test_result_carries_goto_sends_and_metrics(self):
        @cairn.node
        def route(state, input, ctx):
            ctx.add_metrics(cost=0.5, api_calls=1)
            ctx.add_metrics(cost=0.25)
            return cairn.Result(writes={"y": 1}, goto="next", sends=[cairn.Send("w", {"i": 3})], metrics={"tokens_in": 10})
        out = cairn.handle(task("route"))
        self.assertEqual(out["writes"], {"y": 1})
        self.assertEqual(out["goto"], "next")
        self.assertEqual(out["sends"], [{"node": "w", "input": {"i": 3}}])
        self.assertEqual(out["metrics"], {"cost": 0.75, "api_calls": 1, "tokens_in": 10})

    def test_api_calls_and_assets_ride_with_the_result_and_the_failure(self):
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"hello asset")
        path = f.name

        @cairn.node
        def n(state, inp, ctx):
            ctx.record_api_call("openai", model="gpt-x", operation="chat", tokens_in=10, tokens_out=5, cost=0.01, latency_ms=120)
            ctx.add_asset("file://" + path, kind="text", path=path, meta={"lang": "en"})
            if inp == "fail":
                raise ValueError("after the call")
            return {"x": 1}

        ok = cairn.handle(task())
        self.assertEqual(ok["api_calls"], [{"provider": "openai", "model": "gpt-x", "operation": "chat", "tokens_in": 10,
                                            "tokens_out": 5, "cost": 0.01, "latency_ms": 120.0, "status": "ok"}])
        import hashlib
        self.assertEqual(ok["assets"], [{"uri": "file://" + path, "name": "file://" + path, "kind": "text", "bytes": 11,
                                         "sha256": hashlib.sha256(b"hello asset").hexdigest(), "meta": {"lang": "en"}}])
        failed = cairn.handle(task(input="fail"))
        self.assertIn("after the call", failed["error"])
        self.assertEqual(len(failed["api_calls"]), 1)
        self.assertEqual(len(failed["assets"]), 1)
        os.unlink(path)

    def test_context_fields(self):
        seen = {}

        @cairn.node
        def n(state, input, ctx):
            seen.update(task_id=ctx.task_id, attempt=ctx.attempt, params=ctx.params, last=ctx.last_progress,
                        input=input, run_id=ctx.run_id)
            ctx.progress({"pct": 50})
            return {}
        emitted = []
        cairn.handle(task("n", attempt=2, params={"model": "m"}, progress={"pct": 10}, input=[1]), emitted.append)
        self.assertEqual(seen, {"task_id": "t-1", "attempt": 2, "params": {"model": "m"}, "last": {"pct": 10},
                                "input": [1], "run_id": "r-1"})
        self.assertEqual(emitted, [{"progress": {"pct": 50}}])

    def test_interrupt_pauses_then_returns_the_answers_in_order(self):
        @cairn.node
        def ask(state, input, ctx):
            first = ctx.interrupt({"q": 1})
            try:
                second = ctx.interrupt({"q": 2})
            except Exception:  # a node's own handler must not swallow the pause
                return {"swallowed": True}
            return {"answers": [first, second]}
        self.assertEqual(cairn.handle(task("ask")), {"writes": {}, "interrupt": {"q": 1}})
        self.assertEqual(cairn.handle(task("ask", resume="yes", resumes=["yes"])), {"writes": {}, "interrupt": {"q": 2}})
        self.assertEqual(cairn.handle(task("ask", resume="no", resumes=["yes", "no"])), {"writes": {"answers": ["yes", "no"]}})

    def test_errors_are_failures_with_the_traceback_and_a_retry_verdict(self):
        @cairn.node
        def bad(state):
            raise ValueError("the prompt is empty")

        @cairn.node
        def flaky(state):
            raise ConnectionError("provider reset the connection")

        @cairn.node
        def fatal(state):
            raise cairn.Fatal("quota exhausted for good")

        @cairn.node(retry_on=[KeyError])
        def picky(state):
            raise KeyError("missing")
        out = cairn.handle(task("bad"))
        self.assertFalse(out["retryable"])
        self.assertEqual(out["kind"], "ValueError")
        self.assertIn("Traceback", out["error"])
        self.assertTrue(out["error"].endswith("ValueError: the prompt is empty"))
        self.assertTrue(cairn.handle(task("flaky"))["retryable"])
        self.assertFalse(cairn.handle(task("fatal"))["retryable"])
        self.assertTrue(cairn.handle(task("picky"))["retryable"])

    def test_bad_return_value_and_unknown_node(self):
        @cairn.node
        def a(state):
            return 42

        @cairn.node
        def b(state):
            return {}
        self.assertIn("not int", cairn.handle(task("a"))["error"])
        out = cairn.handle(task("zzz"))
        self.assertEqual(out["kind"], "no_node")
        self.assertIn("a, b", out["error"])

    def test_one_function_serves_any_node_name(self):
        @cairn.node
        def only(state, input, ctx):
            return {"node": ctx.node}
        self.assertEqual(cairn.handle(task("step_7")), {"writes": {"node": "step_7"}})

    def test_async_nodes(self):
        @cairn.node
        async def a(state):
            return {"ok": True}
        self.assertEqual(cairn.handle(task("a")), {"writes": {"ok": True}})

    def test_kept_state_is_built_from_parts_and_a_mismatch_is_a_state_cache_failure(self):
        from cairn import _runtime
        _runtime._kept.runs.clear()
        seen = []

        @cairn.node
        def n(state):
            seen.append(state)
            state["log"].append("mutated by the node")   # its own copy: what is kept is unchanged
            return {}

        def parts(*ps, evict=()):
            return task("n", state=None, state_parts=list(ps), state_evict=list(evict))

        cairn.handle(parts({"channel": "log", "version": "v1", "whole": ["a"]},
                           {"channel": "big", "version": "v1", "whole": {"k": 1}, "keep": False}))
        cairn.handle(parts({"channel": "log", "version": "v2", "base": "v1", "append": ["b", "c"]}))
        cairn.handle(parts({"channel": "log", "version": "v2"}))
        self.assertEqual(seen, [{"log": ["a", "mutated by the node"], "big": {"k": 1}},
                                {"log": ["a", "b", "c", "mutated by the node"]},
                                {"log": ["a", "b", "c", "mutated by the node"]}])
        self.assertEqual(_runtime._kept.runs, {"r-1": {"log": ["v2", ["a", "b", "c"]]}})
        # Not kept (keep: false), an append after a version not held, a version not held.
        for bad in ({"channel": "big", "version": "v1"}, {"channel": "log", "version": "v3", "base": "v1", "append": ["x"]}):
            out = cairn.handle(parts(bad))
            self.assertEqual((out["kind"], out["retryable"]), ("state_cache", True), out)
            self.assertIn("state cache", out["error"])
            self.assertEqual(_runtime._kept.runs, {}, "a mismatch drops what the run kept")
            cairn.handle(parts({"channel": "log", "version": "v2", "whole": ["a", "b", "c"]}))
        cairn.handle(task("n", state_parts=[], state_evict=["r-1"]))
        self.assertEqual(_runtime._kept.runs, {})


PROGRAM = textwrap.dedent("""
    import os, sys, time, cairn

    @cairn.node
    def step(state, input, ctx):
        print("a print goes to stderr")           # not the protocol
        os.write(1, b"so does fd 1\\n")
        ctx.progress({"at": state.get("n")})
        time.sleep(state.get("sleep", 0))
        if state.get("boom"):
            raise RuntimeError("boom " + str(state["n"]))
        return {"pid": os.getpid(), "n": state.get("n")}

    cairn.run()
""")


class RunTests(unittest.TestCase):
    def program(self, env=None):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "node.py")
        with open(path, "w") as f:
            f.write(PROGRAM)
        e = dict(os.environ, PYTHONPATH=LIB)
        e.update(env or {})
        return subprocess.Popen([sys.executable, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=e)

    def test_a_served_process_says_it_keeps_state(self):
        p = self.program({"CAIRN_SERVE": "1"})
        p.stdin.write((json.dumps(task("step", state={"n": 1})) + "\n").encode())
        p.stdin.flush()
        answer = json.loads(p.stdout.readline())
        while "progress" in answer:
            answer = json.loads(p.stdout.readline())
        p.stdin.close()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
        self.assertEqual(answer.get("state_cache"), True, answer)

    def test_one_process_answers_task_after_task(self):
        p = self.program()
        answers = []
        for n in range(3):
            p.stdin.write((json.dumps(task("step", state={"n": n})) + "\n").encode())
            p.stdin.flush()
            progress = json.loads(p.stdout.readline())
            result = json.loads(p.stdout.readline())
            self.assertEqual(progress, {"progress": {"at": n}})
            answers.append(result["writes"])
        p.stdin.close()
        self.assertEqual(p.wait(10), 0)
        err = p.stderr.read().decode()
        self.assertEqual([a["n"] for a in answers], [0, 1, 2])
        self.assertEqual(len({a["pid"] for a in answers}), 1, "one process served every task")
        self.assertIn("a print goes to stderr", err)
        self.assertIn("so does fd 1", err)
        self.assertEqual(p.stdout.read(), b"", "nothing but protocol lines on stdout")

    def test_a_failure_answers_and_the_process_serves_on(self):
        p = self.program()
        out, err = p.communicate((json.dumps(task("step", state={"n": 1, "boom": True})) + "\n"
                                  + json.dumps(task("step", state={"n": 2})) + "\n").encode(), timeout=10)
        lines = [json.loads(l) for l in out.decode().splitlines()]
        self.assertIn("RuntimeError: boom 1", lines[1]["error"])
        self.assertFalse(lines[1]["retryable"])
        self.assertEqual(lines[3]["writes"]["n"], 2)
        self.assertIn("RuntimeError: boom 1", err.decode())

    def test_a_served_process_ends_when_its_parent_dies(self):
        # The parent starts the served program, hands it a long task, then dies as kill -9 would:
        # the program notices mid-task (stdin's end only shows between tasks).
        d = tempfile.mkdtemp()
        pidfile = os.path.join(d, "child.pid")
        with open(os.path.join(d, "node.py"), "w") as f:
            f.write(PROGRAM)
        parent = textwrap.dedent(f"""
            import os, subprocess, sys, time
            p = subprocess.Popen([sys.executable, {os.path.join(d, "node.py")!r}], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH={LIB!r}, CAIRN_SERVE="1"))
            open({pidfile!r}, "w").write(str(p.pid))
            p.stdin.write(b'{{"node": "step", "state": {{"sleep": 60}}}}\\n'); p.stdin.flush()
            p.stdout.readline()  # its progress line: it is in the task
            os.kill(os.getpid(), 9)
        """)
        subprocess.run([sys.executable, "-c", parent], timeout=20)
        child = int(open(pidfile).read())
        deadline = time.time() + 5
        while time.time() < deadline and alive(child):
            time.sleep(0.05)
        self.assertFalse(alive(child), "the served program outlived its worker")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    unittest.main()
