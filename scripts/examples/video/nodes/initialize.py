from common import task, done, work

t = task()
topic = t["state"].get("topic") or "a lighthouse keeper's last night"
work(0.1)
done({"topic": topic, "status": "started", "messages": [f"initialized run for topic: {topic}"]})
