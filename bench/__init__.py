"""``make bench``: the broker measured against the practical limit of its design, in one run.

Not part of the installed distribution. Modules:

* :mod:`bench.baseline` — a bare grpc.aio relay fanning each Verify out to three echo servers;
* :mod:`bench.load` — the load generator (its own processes; fixed concurrency or fixed rate);
* :mod:`bench.run` — the orchestrator behind ``python -m bench`` (``make bench``).
"""
