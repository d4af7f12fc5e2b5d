from common import task, done, work, progress

t = task()
topic = t["state"]["topic"]
if "fail" in topic.lower():
    work(0.1)
    done({"status": "error", "messages": ["screenplay model refused the topic"]}, cost=0.01, api_calls=1)
else:
    progress({"stage": "outline"})
    work(0.3)
    progress({"stage": "dialogue"})
    work(0.3)
    characters = ["keeper", "storm", "gull"]
    locations = ["lamp room", "rocks"]
    jobs = [{"kind": "character", "name": c} for c in characters] + [{"kind": "location", "name": l} for l in locations]
    screenplay = {"title": topic.title(), "scenes": 4, "characters": characters, "locations": locations}
    notes = t["state"].get("notes")
    if notes:  # sent back by the review: this draft takes the notes in
        screenplay["revised_for"] = notes
    done({"status": "ok", "screenplay": screenplay, "asset_jobs": jobs,
          "messages": [f"screenplay written: {len(jobs)} assets to render"]}, cost=0.12, api_calls=2)
