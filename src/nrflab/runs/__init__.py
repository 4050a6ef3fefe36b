"""Runs: what is on disk, and who runs jobs.

Lives here: the run directory (:mod:`.rundir`: every file of a run, the lock, "finished with this recipe?"),
the job contract and its settings (:mod:`.jobs`), and the one executor (:mod:`.executor`).
Never here: how a model is trained or measured (``training``, ``measure``), which jobs an experiment needs.
To add one: a new kind of job is a class with ``key``, ``label``, ``after``, ``threads``, ``check``, ``done``
and ``run`` (see :class:`.jobs.Job`); hand a list of them to :func:`.executor.execute`.
"""
