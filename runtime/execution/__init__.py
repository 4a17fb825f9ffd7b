"""Running a plan: the executor, what a handler gets and returns (context), the kind -> handler
table, progress display and the ``sparkql.run`` Python API; and the same over a Ray cluster
(cluster: the driver, cluster_worker: the worker actors, mailbox: their line to the driver,
node_files: what a worker checks before running a step).

May import: sparkql.plan, sparkql.store, sparkql.errors; handlers only by name (handlers.py).
Never torch at import time; ray only inside the cluster modules' functions. Keep this file free
of imports."""
