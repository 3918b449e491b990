"""The engine: where a window is planned (``planner``), claimed and moved (``worker``, ``run``), replayed
(``replay``), and carried between them (``workqueue``, ``queue_loop``)."""
