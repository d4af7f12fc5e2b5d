"""The Celery app and tasks of the Celery peer (its workers import this module)."""
import os

from celery import Celery

app = Celery("cairn_peer", broker=os.environ["PEERS_REDIS_URL"], backend=os.environ["PEERS_REDIS_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_prefetch_multiplier=1, task_acks_late=True)


@app.task
def append(items, i):
    import w5_node
    return items + [w5_node.step(i)]


@app.task
def one(i):
    return 1


@app.task
def join(done):
    return sum(done)
