"""The floor every room stands on: errors, files, records, registries, statistics, formatters, logging.

Lives here: what every room needs and that knows no room: NrflabError, atomic file I/O (core.io), computed
records and their JSON (core.records), metric column names (core.columns), Registry (core.registry),
intervals and the verdict rule (core.stats), how numbers are printed (core.fmt), devices and speed (core.accel).
Never here: an import of any other nrflab room (the import-linter contract checks it), datasets, models,
attacks, training, anything that writes a run.
To add one: a helper belongs here only when two rooms need it and it knows nothing about either; give it
one module by concern (a new kind of number goes into core.fmt, a new registry is a core.registry.Registry).
"""
