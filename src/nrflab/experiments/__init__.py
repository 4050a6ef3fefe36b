"""Lives here: which paper claim, judged how -- one module per experiment (settings, scale presets, plan, analysis), the engine's job kinds, overrides, the reproduce chain, evidence and the validity guard.
Never here: training loops, attacks, measurements or report formatting (each has its room below).
To add one: one module in this package with ``SPEC = register_experiment(ExperimentSpec(..., order=N))`` (settings, ``presets`` per scale, plan, analyze; ``order`` places it in the chain); the registry finds it.

The paper's experiments as typed, registered specs, and the engine that runs them.

* :mod:`.spec` -- what an experiment is (settings, scale presets, runs, analysis);
* :mod:`.registry` -- every experiment (each module registers its own), in the order ``nrflab reproduce`` runs them;
* :mod:`.overrides` -- settings from presets, recipe files, flags and ``--set key=value``;
* :mod:`.engine` -- the runs as tasks with dependencies, locally in parallel or on Ray;
* :mod:`.reproduce` -- the whole chain into one report;
* :mod:`.guard`, :mod:`.evidence`, :mod:`.protocols` -- validity guard, per-image evidence with intervals,
  evaluation protocols (the paper's and BN with batch statistics).

Experiments: ``core`` (Figure 3), ``adversarial``, ``family`` and ``corruptions`` (sharing the
normalization zoo of :mod:`.zoo`), ``features`` (Figures 4 and 6), ``transfer`` and ``planted``.
"""
