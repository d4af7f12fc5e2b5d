"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real
coordinator (SQLite store, Redis hot tier), real workers running the video example's Python
nodes, over real HTTP. Run by scripts/ui-check, which starts the processes and passes:

  CAIRN_URL, CAIRN_TOKEN, CAIRN_BIN, CAIRN_COORDINATOR, CAIRN_EXAMPLE, CAIRN_KILL_PID,
  CAIRN_KILL_NAME, CAIRN_CHROMIUM, CAIRN_SHOTS (a folder for screenshots)
"""
import json
import os
import re
import signal
import subprocess
import sys
import unittest

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CAIRN_URL"]
TOKEN = os.environ["CAIRN_TOKEN"]
BIN = os.environ["CAIRN_BIN"]
SHOTS = os.environ.get("CAIRN_SHOTS", "/tmp")


def cairn(*args):
    out = subprocess.run([f"{BIN}/cairn", *args], check=True, capture_output=True, text=True, timeout=60)
    return out.stdout


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pw = sync_playwright().start()
        cls.browser = cls.pw.chromium.launch(executable_path=os.environ.get("CAIRN_CHROMIUM", "/usr/bin/chromium"),
                                             args=["--no-sandbox", "--disable-gpu"])
        cls.page = cls.browser.new_page(viewport={"width": 1400, "height": 1000})
        cls.errors = []
        cls.requests = []
        cls.page.on("pageerror", lambda e: cls.errors.append(str(e)))
        cls.page.on("console", lambda m: cls.errors.append(m.text) if m.type == "error" else None)
        cls.page.on("request", lambda r: cls.requests.append(r.url))
        expect.set_options(timeout=20_000)

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.pw.stop()

    def shot(self, name):
        self.page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)

    def test_a_dashboard(self):
        try:
            self.walk_through()
        except BaseException:
            self.shot("failure")
            raise

    def walk_through(self):
        page = self.page
        # The token is asked for once.
        page.goto(URL + "/")
        page.get_by_label("Token").fill("not-the-token")
        page.get_by_role("button", name="Open the dashboard").click()
        expect(page.get_by_role("alert")).to_contain_text("wrong token")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Open the dashboard").click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.locator("#live")).to_have_text("live")
        self.errors.clear()  # the refused token's 401 was the point

        # A run submitted elsewhere appears in the table, live, and pauses at its review.
        out = cairn("submit", os.environ["CAIRN_EXAMPLE"], "--input", '{"topic": "the last lighthouse keeper"}', "--json")
        run_id = json.loads(out)["run_id"]
        row = page.locator(f'tr[data-run="{run_id}"]')
        expect(row).to_be_visible()
        expect(row.locator(".badge")).to_have_text("paused", timeout=60_000)
        expect(row).to_contain_text("video-production")
        self.shot("1-runs")

        # Filters: a status that does not match hides it; paused shows it.
        page.get_by_label("Status").select_option("completed")
        expect(page.locator(f'tr[data-run="{run_id}"]')).to_have_count(0)
        page.get_by_label("Status").select_option("paused")
        expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()

        # The run: the graph with its nodes' states.
        page.locator(f'tr[data-run="{run_id}"] a').click()
        expect(page.locator("h1")).to_contain_text(run_id)
        graph = page.locator("#graph svg")
        expect(graph).to_be_visible()
        node = lambda name: page.locator(f'#graph g.node[data-node="{name}"]')
        expect(node("initialize")).to_have_attribute("data-state", "done")
        expect(node("generate_screenplay")).to_have_attribute("data-state", "done")
        expect(node("review")).to_have_attribute("data-state", "interrupted")
        expect(node("finalize")).to_have_attribute("data-state", "idle")
        # Graphviz drew it (the coordinator has dot): its picture, not the page's own layout.
        expect(page.locator("#graph svg g.graph")).to_have_count(1)
        expect(page.locator('#node-states li[data-node="review"] .badge')).to_have_text("interrupted")

        # The question's payload and the form that answers it.
        form = page.locator("form.interrupt")
        expect(form).to_be_visible()
        expect(form.locator("pre.payload")).to_contain_text("screenplay")
        self.shot("2-paused")

        # Timeline: the tasks so far, each on a worker.
        timeline = page.locator("#timeline")
        expect(timeline.locator('tr[data-node="initialize"]')).to_have_count(1)
        workers_seen = timeline.locator('tr[data-node="generate_screenplay"] td').nth(3).inner_text()
        self.assertTrue(workers_seen.startswith("worker-"), workers_seen)

        # Answer it; the run completes without a reload, and the graph follows.
        page.evaluate("window.__cairnMarker = 'same page'")
        form.get_by_label("Answer").fill('{"approved": true}')
        form.get_by_role("button", name="Answer and continue").click()
        expect(page.locator("form.interrupt")).to_have_count(0)
        expect(page.locator(".facts .badge").first).to_have_text("completed", timeout=90_000)
        expect(node("finalize")).to_have_attribute("data-state", "done")
        expect(node("END")).to_have_attribute("data-state", "done")
        expect(node("render_asset")).to_have_attribute("data-state", "done")
        self.assertEqual(page.evaluate("window.__cairnMarker"), "same page")
        self.shot("3-completed")

        # Timeline after: render_asset fanned out over several tasks and workers; costs show.
        expect(timeline.locator('tr[data-node="finalize"]')).to_have_count(1)
        self.assertGreater(timeline.locator('tr[data-node="render_asset"]').count(), 1)
        expect(page.locator(".facts")).to_contain_text("$")

        # The state view: the newest checkpoint's state, and what changed since the one before.
        expect(page.locator("#state pre.state-json")).to_contain_text('"video"')
        expect(page.locator('#state tr[data-channel="video"]')).to_have_count(1)
        # An older checkpoint: the one written by generate_screenplay, whose next task is review.
        older = page.locator("#checkpoints button", has_text=re.compile(r"changed .*screenplay.* next review")).first
        older.click()
        expect(older).to_have_attribute("aria-pressed", "true")
        expect(page.locator('#state tr[data-channel="screenplay"]')).to_have_count(1)
        expect(page.locator("#state pre.state-json")).not_to_contain_text('"video"')
        self.shot("4-state")

        # Fork from that checkpoint: a new run, opened, that pauses at review again.
        page.get_by_role("button", name="Fork from here").click()
        expect(page.locator("h1")).not_to_contain_text(run_id)
        expect(page.locator(".facts .badge").first).to_have_text("paused", timeout=60_000)
        expect(page.locator('#graph g.node[data-node="review"]')).to_have_attribute("data-state", "interrupted")
        fork_id = page.locator("h1 .mono").inner_text()
        self.assertIn(f"{run_id}@", json.loads(cairn("status", fork_id, "--json"))["forked_from"] or "")
        # Cancel it from the page.
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Cancel run").click()
        expect(page.locator(".facts .badge").first).to_have_text("cancelled", timeout=20_000)

        # The CLI agrees on the answered run.
        status = json.loads(cairn("status", run_id, "--json"))
        self.assertEqual(status["status"], "completed")

        # Workers: live; a killed worker leaves the table without a reload.
        page.get_by_role("link", name="Workers").click()
        victim = os.environ["CAIRN_KILL_NAME"]
        expect(page.locator(f'tr[data-worker="{victim}"]')).to_be_visible()
        expect(page.locator("tbody tr")).to_have_count(3)
        self.shot("5-workers")
        os.kill(int(os.environ["CAIRN_KILL_PID"]), signal.SIGKILL)
        expect(page.locator(f'tr[data-worker="{victim}"]')).to_have_count(0, timeout=30_000)
        expect(page.locator("tbody tr")).to_have_count(2)
        self.shot("6-worker-killed")

        # The token never went into a URL, and nothing was fetched from elsewhere.
        self.assertFalse([u for u in self.requests if TOKEN in u], "the token appeared in a URL")
        self.assertFalse([u for u in self.requests if not u.startswith(URL)], [u for u in self.requests if not u.startswith(URL)][:3])
        self.assertEqual(self.errors, [])

    def test_b_security_headers(self):
        import urllib.request
        with urllib.request.urlopen(URL + "/") as r:
            csp = r.headers["Content-Security-Policy"]
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
            self.assertNotIn(TOKEN, r.read().decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
