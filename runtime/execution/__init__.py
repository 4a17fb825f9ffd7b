"""Running a plan: the executor, what a handler gets and returns (context), the kind -> handler
table, progress display and the ``sparkql.run`` Python API.

May import: sparkql.plan, sparkql.store, sparkql.errors; handlers only by name (handlers.py).
Never torch at import time. Keep this file free of imports."""
