"""Planted features: the paper's feature-level claims tested against ground truth.

Lives here: the planted experiment (settings and scales, its runs as engine tasks, measurement, claims, report).
Never here: the planted data generator (``nrflab.data.planted``), training, the executor (``nrflab.runs``).
To add one: a new planted run is one ``add(...)`` in :func:`.runs.planted_runs`; a new verdict goes in
:mod:`.claims` or :mod:`.controls` and its section in :mod:`.sections`.

Registered as the experiment ``planted`` (``SPEC``, :mod:`.experiment`): its scales are ``cpu`` (``FULL``,
below), ``quick`` (a pipeline check) and ``paper`` (32 x 32, ResNet-18, 50,000 images per set, five seeds).

Every image of a planted set (``nrflab.data.planted``) carries a robust feature (RF: a low-frequency class
template of L2 norm ``a_r`` = 3, shifted by up to 2 px) and a non-robust feature (NRF: a high-frequency
class template of norm ``a_n`` at a fixed position), so a model's reliance is *measured* on swapped
images (``nrflab.measure.reliance``: rho = F_N - F_R, +1 = follows the NRF only, -1 = the RF only), not inferred.
BN and no-normalization smallcnns are trained with the same recipe and seeds (paired), and each claim is
judged by ``nrflab.core.stats.judge`` (agrees/disagrees only when the paired 95 % interval excludes zero;
void when a capability control failed or too few models learned).

What it trains (defaults, ``FULL``: 98 runs plus the MNIST chain; ``QUICK`` is a pipeline check):

* capability controls (3 seeds): RF alone (no NRF) and NRF alone (no RF) at the operating point; a
  normalization whose median seed stays below 90 % on either makes the preference verdict void;
* the NRF-norm sweep (redundant set: both features fully predictive), rho(a_n) per normalization; the
  operating point a_n = 2 with 5 seeds and early-training probes every 4 steps, the other points 2 seeds;
* controls at the operating point (5 seeds): the NRF made robust at equal availability (norm x2 and white
  noise x2), made less available (noise x2), moved to a mid band;
* planted D_rand (RF class random, label = NRF class) at a_n = 1 and 2, the planted conflicting set
  (RF of class y-1, NRF and label y) at a_n = 2 (5 seeds each);
* the MNIST question (2 seeds): a BN model on the planted MNIST D_rand (the digit is the RF) vs on the
  attack-built MNIST D_rand (``nrflab.features``), each evaluated with running and with batch statistics;
* transfer with ground truth: PGD-L2 1.5 from each operating-point model to the models of the other seeds,
  and where each perturbation's energy lies (RF band, NRF band, rest).

Reliance comparisons leave out seeds in which a model stayed below 90 % agree accuracy (no-normalization
training occasionally blows up at the peak learning rate; the report names the seeds left out).
Every run is a training task of the one executor, so ``--workers`` and ``--backend ray`` reach each of
them; each trains and is measured on ``run_threads`` torch threads (1 at the cpu scale, so the numbers do
not depend on ``--workers``); finished runs are reused.

Calibration behind the defaults (16 x 16, 2,000 training images, smallcnn width 0.5, this package's
generator and trainer; one or two seeds each unless stated):

* At the design's amplitudes (a_r = 3, a_n = 0.35) no model learns the NRF within CPU budgets: the NRF
  alone stays at chance for both normalizations (4,000 images, 6 epochs); BN learns it alone from
  a_n = 0.5, no normalization only from a_n ~ 2 (36 % at 1.4, 100 % at 2). With both features present
  both follow the RF up to a_n = 1. The sweep therefore spans a_n = 1 ... 4 and the operating point is
  a_n = 2 (NRF swap cost ~1.4 in L2, the RF's ~2.1), where no normalization is near indifferent and can
  learn the NRF alone.
* SGD one-cycle peak 0.05 made no-normalization training diverge when the NRF norm was >= 2.8 (agree
  accuracy 18 %, the training loss rising at the peak rate); 0.02 left models under-trained (RF alone
  91 %); Adam 1e-3 under-trained too (RF alone 56-66 %). 0.03 for 6 epochs trained almost every case.
* White noise 0.05 (per pixel) is in every set so the robust control can double the NRF norm at the same
  template signal-to-noise ratio (norm 4, noise 0.1).
* Planted D_rand at a_n = 1: BN 83 % / 100 %, no normalization 10 % / 15 % (two seeds); at a_n = 2 both
  learn it (100 % / 98 %): two amplitudes are run because the claim depends on the NRF's size.
* PGD-L2 eps 1.0 leaves every operating-point model at 0 % (both normalizations), so robust accuracy is
  reported at 0.25 and 0.5 (BN 86 % / 3 %, no normalization 76 % / 22 %, 5 seeds).
* Cost of the default run on a shared 2-core machine: 442 s wall / 362 s CPU in one process (``workers=1``,
  load 3-5 from other jobs), 501 s wall / 402 s CPU with the default two workers (load 5-8); ~3.7 s of CPU
  per run including its measurement. On an otherwise idle 2-core machine the two workers need about
  half the CPU time in wall time (~3.5 min).

Measured with the defaults (seeds 0-4; see the report for intervals): BN's rho crosses 0 at a_n ~1.6, no
normalization's at ~2.3; at a_n = 2 rho is +0.69 (BN) vs -0.66 (none), paired difference +1.35 [0.98,
1.72]; BN learns the RF first and then switches to the NRF (F_R - F_N = +26 points where it first
reaches 50 % accuracy); the availability and mid-band controls shrink BN's preference (BN's rho falls),
the robust control closes the gap because the no-norm model adopts the larger NRF; planted D_rand
separates the normalizations at a_n = 1 (BN 78 %, none 13 %) but not at a_n = 2 (100 % vs 93 %); the
attack-built MNIST D_rand collapses BN's running statistics (14 % running vs 46 % batch) while the planted
MNIST D_rand does not (100 % / 100 %); transfer from no-norm sources is not measurably better
(22 % vs 27 %).

The package, one concept a module: :mod:`.settings` (``Settings``, ``FULL``, ``PAPER``, ``QUICK``),
:mod:`.runs` (the training runs, their recipe and tasks), :mod:`.measurement` (each run's final numbers),
:mod:`.mnist` (the MNIST question), :mod:`.transferability` (transfer with ground truth), :mod:`.claims`,
:mod:`.controls` and :mod:`.order` (the verdicts), :mod:`.figures`, :mod:`.text` and :mod:`.sections` (the
report), :mod:`.experiment` (``SPEC``: plan and analysis; ``run``). Progress goes to the ``nrflab.planted``
logger.
"""

from __future__ import annotations

from nrflab.experiments.planted.experiment import SPEC, run
from nrflab.experiments.planted.settings import EVAL_FILE, FULL, PAPER, QUICK, Settings

__all__ = [
    "EVAL_FILE",
    "FULL",
    "PAPER",
    "QUICK",
    "SPEC",
    "Settings",
    "run",
]
