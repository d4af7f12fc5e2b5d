from common import task, done, work, progress

t = task()
state = t["state"]
scenes = state["screenplay"]["scenes"]
shots = []
start = (t.get("progress") or {}).get("done", 0)   # a retried attempt continues where the last stopped
for i in range(start, scenes):
    work(0.15)
    shots.append({"scene": i + 1, "assets": sorted(state["assets"].keys())[: 2 + i % 3]})
    progress({"done": i + 1, "of": scenes})
done({"shots": shots, "total_cost": 0.03 * scenes, "messages": [f"{scenes} shots composed"]},
     cost=0.03 * scenes, api_calls=scenes)
