"""The example's nodes, written with Cairn's Python library (scripts/python): each function is
one node of video.yaml, and long-lived processes (`serve: true`) answer all of them.

Each simulates the cost and delay of a model call (CAIRN_DEMO_DELAY scales the delay; 0 is
instant) and reports metrics.
"""
import os
import random
import time

import cairn

DELAY = float(os.environ.get("CAIRN_DEMO_DELAY", "1.0"))


def work(seconds):
    """Pretend to call a model for about `seconds`."""
    time.sleep(max(0.0, seconds * DELAY * random.uniform(0.7, 1.3)))


def done(writes, cost=0.0, api_calls=0):
    return cairn.Result(writes=writes, metrics={"cost": round(cost, 4), "api_calls": api_calls})


@cairn.node
def initialize(state, input, ctx):
    topic = state.get("topic") or "a lighthouse keeper's last night"
    work(0.1)
    return {"topic": topic, "status": "started", "messages": [f"initialized run for topic: {topic}"]}


@cairn.node
def generate_screenplay(state, input, ctx):
    topic = state["topic"]
    if "fail" in topic.lower():
        work(0.1)
        return done({"status": "error", "messages": ["screenplay model refused the topic"]}, cost=0.01, api_calls=1)
    ctx.progress({"stage": "outline"})
    work(0.3)
    ctx.progress({"stage": "dialogue"})
    work(0.3)
    characters = ["keeper", "storm", "gull"]
    locations = ["lamp room", "rocks"]
    jobs = [{"kind": "character", "name": c} for c in characters] + [{"kind": "location", "name": l} for l in locations]
    screenplay = {"title": topic.title(), "scenes": 4, "characters": characters, "locations": locations}
    if state.get("notes"):  # sent back by the review: this draft takes the notes in
        screenplay["revised_for"] = state["notes"]
    return done({"status": "ok", "screenplay": screenplay, "asset_jobs": jobs,
                 "messages": [f"screenplay written: {len(jobs)} assets to render"]}, cost=0.12, api_calls=2)


@cairn.node
def review(state, input, ctx):
    """A person approves the screenplay: the run pauses here until `cairn resume` answers.

    cairn resume RUN --value '{"approved": true}'            goes on to render the assets
    cairn resume RUN --value '{"notes": "shorter, please"}'  sends the screenplay back
    """
    if state.get("status") == "error":
        return {}  # nothing to review: the route goes on to finalize
    answer = ctx.interrupt({"question": "Approve this screenplay? Resume with {\"approved\": true}, "
                                        "or {\"notes\": \"...\"} to have it rewritten.",
                            "screenplay": state.get("screenplay")})
    answer = answer if isinstance(answer, dict) else {}
    if answer.get("approved"):
        return {"status": "approved", "messages": ["screenplay approved"]}
    notes = answer.get("notes") or "rewrite it"
    return {"status": "revise", "notes": notes, "messages": [f"screenplay sent back: {notes}"]}


@cairn.node
def render_asset(state, job, ctx):
    cost = 0.05 if job["kind"] == "character" else 0.08
    work(0.4)
    asset = {"kind": job["kind"], "uri": f"s3://assets/{ctx.run_id}/{job['name'].replace(' ', '_')}.png",
             "attempt": ctx.attempt}
    return done({"assets": {job["name"]: asset}, "total_cost": cost}, cost=cost, api_calls=1)


@cairn.node
def generate_shots(state, input, ctx):
    scenes = state["screenplay"]["scenes"]
    shots = []
    start = (ctx.last_progress or {}).get("done", 0)  # a retried attempt continues where the last stopped
    for i in range(start, scenes):
        work(0.15)
        shots.append({"scene": i + 1, "assets": sorted(state["assets"].keys())[: 2 + i % 3]})
        ctx.progress({"done": i + 1, "of": scenes})
    return done({"shots": shots, "total_cost": 0.03 * scenes, "messages": [f"{scenes} shots composed"]},
                cost=0.03 * scenes, api_calls=scenes)


@cairn.node
def finalize(state, input, ctx):
    work(0.2)
    if state.get("status") == "error":
        return {"status": "failed_gracefully", "messages": ["finalized without a video"]}
    video = {"uri": f"s3://videos/{ctx.run_id}.mp4", "shots": len(state.get("shots", [])),
             "assets": len(state.get("assets", {}))}
    return done({"status": "done", "video": video, "messages": ["final cut rendered"]}, cost=0.2, api_calls=1)


if __name__ == "__main__":
    cairn.run()
