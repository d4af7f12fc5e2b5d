from common import task, done, work

t = task()
job = t["input"]
cost = 0.05 if job["kind"] == "character" else 0.08
work(0.4)
asset = {"kind": job["kind"], "uri": f"s3://assets/{t['run_id']}/{job['name'].replace(' ', '_')}.png",
         "attempt": t["attempt"]}
done({"assets": {job["name"]: asset}, "total_cost": cost}, cost=cost, api_calls=1)
