"""Lives here: how results reach a reader -- Markdown/HTML reports, ``verdicts.json``, figures.
Never here: numbers are formatted by ``nrflab.core.fmt``; verdicts are judged in ``nrflab.experiments``.
To add one: a section is a ``Section`` passed to ``write_report``; a figure a function in ``plots.py``.
"""
