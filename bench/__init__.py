"""``make bench``: how close the orchestrator comes to the physical limits of a Krea account.

A perfect client keeps Krea's concurrency full, spends no request it does not need, notices a
finished job at once, downloads at wire speed and costs next to nothing in CPU and memory. The
bench measures each of those in one run, side by side with the naive approach from Krea's docs
(POST, then ``GET /jobs/{id}`` every 5 seconds per job) and with a plain aiohttp download loop:

* the simulator runs as its own process (``orchestrator simulate``) at a high time scale;
* the orchestrator runs as users run it, ``orchestrator run`` in a subprocess, on generated
  manifests, and is measured from outside (``wait4`` rusage, ``/proc``, a TCP relay, the
  simulator's ``/_sim/`` ground truth, the ledger file read with ``sqlite3``);
* the result is a table on stdout and in ``bench/results/latest.md``, and one number per figure
  in ``bench/results/latest.json``.

Modules: ``config`` (sizes and why), ``procs`` (processes, rusage, relay), ``simdata`` (ground
truth, clock mapping), ``workload`` (manifests, ledger reads), ``naive`` and ``plain`` (the
references), ``scenarios`` and ``scale`` (what is run), ``ledger_tps``, ``analysis`` (pure
arithmetic), ``report`` and ``rows`` (verdicts and the table), ``sim_throughput`` (simulator
capacity). Not part of ``make test``: nothing here asserts on time.
"""
