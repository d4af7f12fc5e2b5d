"""A person approves the screenplay: the node asks (an interrupt), and runs again with the answer.

cairn resume RUN --value '{"approved": true}'         goes on to render the assets
cairn resume RUN --value '{"notes": "shorter, please"}'  sends the screenplay back to be rewritten
"""
from common import task, done, ask

t = task()
state = t["state"]
if state.get("status") == "error":
    done({})  # nothing to review: the route goes on to finalize
elif "resume" not in t:
    ask({"question": "Approve this screenplay? Resume with {\"approved\": true}, or {\"notes\": \"...\"} to have it rewritten.",
         "screenplay": state.get("screenplay")})
else:
    answer = t["resume"] if isinstance(t["resume"], dict) else {}
    if answer.get("approved"):
        done({"status": "approved", "messages": ["screenplay approved"]})
    else:
        notes = answer.get("notes") or "rewrite it"
        done({"status": "revise", "notes": notes, "messages": [f"screenplay sent back: {notes}"]})
