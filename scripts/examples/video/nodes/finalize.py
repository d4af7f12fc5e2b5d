from common import task, done, work

t = task()
state = t["state"]
work(0.2)
if state.get("status") == "error":
    done({"status": "failed_gracefully", "messages": ["finalized without a video"]})
else:
    video = {"uri": f"s3://videos/{t['run_id']}.mp4", "shots": len(state.get("shots", [])),
             "assets": len(state.get("assets", {}))}
    done({"status": "done", "video": video, "messages": ["final cut rendered"]}, cost=0.2, api_calls=1)
