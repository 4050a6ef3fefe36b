"""measure: "model + images -> numbers". Never trains, never writes a run directory.

Lives here: batched prediction under a named protocol (predict.py), the framework's row per image and in
summary (framework.py), LIGS (ligs.py), transfer success (transfer_rate.py), the health checks and every
validity threshold (health.py), feature reliance (reliance.py), gradient-masking checks (sanity.py), BN
surgery (bn_surgery.py), corruptions (corruptions.py), accuracy on any data source (metrics.py).
Never here: training, run directories and caches (runs/), verdicts and their wording (experiments/),
report formatting (report/), anything that imports a room above attacks, models and data.
To add one: a metric or probe is one module here that predicts through ``predict.predict`` and counts
per image through ``framework.image_outcomes``; its thresholds go into ``health.THRESHOLDS``.
"""
