"""W6's Python nodes: an agent and a tool taking turns, each appending a 500-byte message. They
read only `last` (the newest message; the graph says `reads: [last]`), so a step ships one
message however long `messages` grows; or (`reads: [messages]`) the whole history, as an agent
that sends its conversation to a model does: the workers' state cache and the served process
then get only the new message each step. LangGraph's peer imports `message` alone."""
try:
    import cairn
except ImportError:  # the peers do not need the library
    cairn = None

MESSAGE = 500


def message(who, n):
    head = f"{who} {n:06d} "
    return head + "m" * (MESSAGE - len(head))


def newest(state):
    if "messages" in state:
        history = state["messages"]
        return history[-1] if history else None
    return state.get("last")


def agent(state, input, ctx):
    n = int((newest(state) or "start 0").split()[1]) + 1
    return {"messages": [message("agent", n)], "last": message("agent", n), "count": 1}


def tool(state, input, ctx):
    n = int(newest(state).split()[1])
    return {"messages": [message("tool", n)], "last": message("tool", n)}


if cairn is not None:
    cairn.node(agent)
    cairn.node(tool)

if __name__ == "__main__":
    cairn.run()
