"""Lives here: what every room needs and that knows no room: errors, files, records, registries, stats, formatters.
Never here: an import of any other nrflab room (the import-linter contract checks it), or anything domain-specific.
To add one: a helper two rooms need, in the module of its concern (a kind of number: core.fmt; a registry: Registry).

The floor every room stands on: NrflabError (core.errors), atomic file I/O (core.io), computed records and their
JSON (core.records), metric column names (core.columns), Registry (core.registry), intervals and the one verdict
rule (core.stats), how numbers are printed (core.fmt), devices and speed (core.accel), logging (core.logs).
"""
