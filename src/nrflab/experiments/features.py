"""Figures 4 and 6 at CPU scale: training BN and no-BN twins on D_R, D_rand, D_det and the conflicting set.

Sources: a standard BN smallcnn (for D_rand, D_det and the conflicting set) and an adversarially trained
one (PGD-L2, for D_R). The feature sets are built from the mnist5k training set; the twins train on them
and are evaluated every epoch on the ORIGINAL clean test set (clean accuracy, PGD-L2 robust accuracy,
LIGS; for the conflicting set also accuracy against (y + 1) mod C). A diagnostic also evaluates the BN
twins with batch instead of running statistics, to tell a BN statistics mismatch from a real collapse.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..checkpoint import load_model
from ..data import load_dataset
from ..features import build_dataset
from ..metrics import batches, dataset_tensors
from ..plots import plot_runs
from ..report import Section, claim_line, markdown_table, num, pct
from ..training import make_config, read_metrics, train_or_reuse

SETS = ("d_r", "d_rand", "d_det", "conflicting")
NORMS = ("bn", "none")
SET_TITLES = {"d_r": "D_R", "d_rand": "D_rand", "d_det": "D_det", "conflicting": "conflicting"}


@dataclass(frozen=True)
class Settings:
    """The CPU-scale settings of the experiment (all recorded in the report).

    The defaults run in about 10 minutes on 2 CPU cores: 2,000 training images per set, 40 large PGD
    steps (the source still reaches the target for about 90 % of the images), 100 inversion steps.
    """

    dataset: str = "mnist5k"
    width: float = 0.5
    limit: int | None = 2000  # training images used for every set (None: all 4,000)
    source_epochs: int = 15
    robust_epochs: int = 5
    robust_eps: float = 1.5  # PGD-L2 adversarial training radius of the D_R source
    robust_steps: int = 5
    nrf_eps: float = 2.0  # D_rand / D_det / conflicting: targeted PGD-L2 radius
    nrf_steps: int = 40
    nrf_step_size: float = 0.25
    inv_steps: int = 100  # D_R: representation inversion
    inv_step_size: float = 0.2
    epochs: int = 10  # twins trained on each set
    # Twins' peak one-cycle learning rates (None: the dataset preset's). The paper: 0.01 for D_R and D_rand,
    # 0.1 for D_det and the conflicting set; D_R gets 0.05 here, as 0.01 leaves it under-trained in 10 epochs.
    lr_d_r: float | None = 0.05
    lr_d_rand: float | None = 0.01
    lr_det: float | None = 0.1  # D_det and the conflicting set
    eval_size: int = 250
    eval_attack: str = "pgd-l2:eps=1.0,step=0.4,steps=5"
    device: str = "cpu"

    def lr(self, kind: str) -> float | None:
        """The twins' learning rate on set ``kind``."""
        return {"d_r": self.lr_d_r, "d_rand": self.lr_d_rand}.get(kind, self.lr_det)


FULL = Settings()
QUICK = Settings(width=0.25, limit=96, source_epochs=1, lr_d_r=None, lr_d_rand=None, lr_det=None, robust_epochs=1,
                 robust_steps=1, nrf_steps=4, nrf_step_size=0.5, inv_steps=4, inv_step_size=0.5, epochs=1,
                 eval_size=48, eval_attack="pgd-l2:eps=1.0,step=0.5,steps=2")


def _train(cfg_fields: dict, run_dir: Path, progress: bool) -> Path:
    return train_or_reuse(make_config(**cfg_fields), run_dir, progress=progress)


def _sources(out: Path, s: Settings, progress: bool) -> tuple[Path, Path]:
    common = dict(dataset=s.dataset, arch="smallcnn", norm="bn", width=s.width, seed=0, eval_attacks=[],
                  ligs=False, eval_size=s.eval_size, device=s.device)
    std = _train({**common, "epochs": s.source_epochs}, out / "sources" / "standard", progress)
    rob = _train({**common, "epochs": s.robust_epochs, "adv_train": "pgd-l2", "adv_eps": s.robust_eps,
                  "adv_steps": s.robust_steps}, out / "sources" / "robust", progress)
    return std, rob


def _build_sets(out: Path, s: Settings, std: Path, rob: Path, progress: bool) -> dict[str, dict]:
    sets = out / "sets"
    common = dict(limit=s.limit, seed=0, device=s.device, resume=True, progress=progress)
    cards = {}
    cards["d_r"] = build_dataset("d_r", rob, s.dataset, sets / "d_r", steps=s.inv_steps, step_size=s.inv_step_size,
                                 **common).card
    nrf = dict(steps=s.nrf_steps, eps=s.nrf_eps, step_size=s.nrf_step_size)
    for kind in ("d_rand", "d_det"):
        cards[kind] = build_dataset(kind, std, s.dataset, sets / kind, **nrf, **common).card
    cards["conflicting"] = build_dataset("conflicting", std, s.dataset, sets / "conflicting", base=sets / "d_r",
                                         **nrf, **common).card
    return cards


def _twins(out: Path, s: Settings, seeds: Sequence[int], progress: bool) -> dict[tuple[str, str, int], Path]:
    runs = {}
    for kind in SETS:
        lr = s.lr(kind)
        for norm in NORMS:
            for seed in seeds:
                fields = dict(dataset=str(out / "sets" / kind), arch="smallcnn", norm=norm, width=s.width,
                              epochs=s.epochs, seed=seed, eval_size=s.eval_size, eval_attacks=[s.eval_attack],
                              eval_shifted_labels=kind == "conflicting", device=s.device,
                              **({"lr": lr} if lr is not None else {}))
                runs[(kind, norm, seed)] = _train(fields, out / "runs" / f"{kind}_{norm}_s{seed}", progress)
    return runs


def _bn_statistics(run: Path, s: Settings) -> dict[str, float]:
    """Diagnostic of a BN twin on the whole clean test set: accuracy vs y and y+1 and the most frequent
    class's share of the predictions, with BN's running statistics (the protocol) and with each batch
    of 250 test images normalized by its own statistics (a train-mode forward of a throwaway copy)."""
    bundle = load_dataset(s.dataset)
    x, y = dataset_tensors(bundle.test)
    model = load_model(run, s.device)
    row = {}
    for mode in ("running", "batch"):
        model.train(mode == "batch")
        with torch.no_grad():
            pred = torch.cat([model(xb).argmax(1).cpu() for xb, _ in batches((x, y), 250, s.device)])
        row[f"{mode}_y"] = float((pred == y).float().mean())
        row[f"{mode}_y1"] = float((pred == (y + 1) % bundle.num_classes).float().mean())
        row[f"{mode}_top"] = float(torch.bincount(pred).max()) / len(pred)
    return row


def _final(run: Path) -> dict[str, float]:
    return read_metrics(run)[-1]


def _robust_key(row: dict) -> str:
    return next(k for k in row if k.startswith("robust_acc["))


def _cell(values: list[float], fmt: Callable[[float], str]) -> str:
    mean = sum(values) / len(values)
    return fmt(mean) + (" (" + " / ".join(fmt(v) for v in values) + ")" if len(values) > 1 else "")


def run(out_dir: Path, *, quick: bool = False, seeds: Sequence[int] = (0, 1), progress: bool = True,
        settings: Settings | None = None) -> list[Section]:
    """Build the sets, train the twins, and return the report section (table, plots, claim lines).

    ``settings`` replaces the documented CPU-scale settings (``FULL``, or ``QUICK`` when ``quick``).
    """
    out = Path(out_dir)
    s = settings or (QUICK if quick else FULL)
    seeds = list(seeds)[:1] if quick else list(seeds)
    start = time.perf_counter()
    std, rob = _sources(out, s, progress)
    cards = _build_sets(out, s, std, rob, progress)
    runs = _twins(out, s, seeds, progress)
    return [_section(out, s, seeds, cards, runs, time.perf_counter() - start)]


def _section(out: Path, s: Settings, seeds: list[int], cards: dict, runs: dict, seconds: float) -> Section:
    rows, images = [], []
    finals = {k: _final(v) for k, v in runs.items()}
    rob_key = _robust_key(next(iter(finals.values())))
    for kind in SETS:
        for norm in NORMS:
            f = [finals[(kind, norm, sd)] for sd in seeds]
            shifted = _cell([r["shifted_acc"] for r in f], pct) if kind == "conflicting" else ""
            rows.append([SET_TITLES[kind], "BN" if norm == "bn" else "no BN", _cell([r["clean_acc"] for r in f], pct),
                         _cell([r[rob_key] for r in f], pct), _cell([r["ligs"] for r in f], num), shifted])
        extra = [("shifted_acc", "accuracy vs y+1 (follows RFs)")] if kind == "conflicting" else []
        ordered = [(n, sd) for n in NORMS for sd in seeds]
        images += [p for p in plot_runs([runs[(kind, n, sd)] for n, sd in ordered], out / f"curves_{kind}",
                                        title=f"trained on {SET_TITLES[kind]}, tested on clean {s.dataset}",
                                        labels=[f"{'BN' if n == 'bn' else 'no BN'} seed {sd}" for n, sd in ordered],
                                        extra_panels=extra) if p.suffix == ".png"]
    table = markdown_table(["set", "model", "clean acc (= acc vs y)", f"robust acc {rob_key[11:-1]}", "LIGS",
                            "acc vs y+1"], rows)
    sanity = markdown_table(
        ["set", "images", "source acc vs stored labels", "attack success / rep. distance after/before"],
        [[SET_TITLES[k], c["num_images"], pct(c["sanity"]["source_acc_vs_stored_labels"]),
          pct(c["sanity"]["attack_success_rate"]) if "attack_success_rate" in c["sanity"]
          else num(c["sanity"]["relative_rep_distance_after"])] for k, c in cards.items()])
    diags = {(kind, sd): _bn_statistics(runs[(kind, "bn", sd)], s) for kind in SETS for sd in seeds}
    diag_rows = [[SET_TITLES[kind], sd] + [f"{pct(d[f'{m}_y'])} / {pct(d[f'{m}_y1'])} / {pct(d[f'{m}_top'])}"
                                           for m in ("running", "batch")] for (kind, sd), d in diags.items()]
    diag = markdown_table(["set", "seed", "running statistics: acc vs y / vs y+1 / top class share",
                           "batch statistics: acc vs y / vs y+1 / top class share"], diag_rows)
    md = "\n\n".join([
        "Settings: " + ", ".join(f"{k}={v}" for k, v in asdict(s).items()) + f"; twin seeds {seeds} (the sets are "
        "built once, seed 0). Source models: smallcnn BN; D_R from a PGD-L2 adversarially trained source, "
        "the others from a standard one. Images stored as uint8. Values: mean (per seed), final epoch. "
        f"Wall time of this invocation: {seconds / 60:.1f} min (finished sources, sets and twins are reused).",
        table, "Built sets (sanity, on the stored images):", sanity,
        "Diagnostic (not part of the paper's protocol): the BN twins on the whole clean test set, normalized "
        "with BN's running statistics (as above) and with each batch of 250 test images' own statistics.", diag,
        _statistics_finding(diags),
        *_claims(finals, runs, seeds, diags)])
    return Section("Feature datasets: D_R, D_rand, D_det, conflicting (Figures 4 and 6)", md, images)


def _statistics_finding(diags: dict[tuple[str, int], dict[str, float]]) -> str:
    """One measured sentence: do the BN twins on the NRF sets collapse, and do batch statistics undo it?"""
    keys = [k for k in diags if k[0] != "d_r"]
    running, batch = [diags[k]["running_top"] for k in keys], [diags[k]["batch_top"] for k in keys]
    spread = lambda v: f"{pct(min(v))}-{pct(max(v))}"  # noqa: E731
    head = (f"Finding: on D_rand, D_det and the conflicting set the most frequent prediction of the BN twins takes "
            f"{spread(running)} of the clean test images with running statistics and {spread(batch)} with batch "
            "statistics")
    if min(running) <= 0.5:
        return head + "; not every BN twin collapses to one class in this run."
    if max(batch) < 0.5:
        return head + (": the collapse to one class is a train/test mismatch of BN's statistics (the running "
                       "statistics, gathered on the perturbed training images, do not fit clean images), not a "
                       "network that predicts one class.")
    return head + ": batch statistics do not undo the collapse in every run, so it is not only a statistics mismatch."


def _claims(finals: dict, runs: dict, seeds: list[int], diags: dict) -> list[str]:
    def acc(kind: str, norm: str, key: str = "clean_acc") -> list[float]:
        return [finals[(kind, norm, sd)][key] for sd in seeds]

    bn, nobn = acc("d_rand", "bn"), acc("d_rand", "none")
    gap = [b - n for b, n in zip(bn, nobn)]
    agrees5 = all(g > 0.05 for g in gap) if all(math.isfinite(g) for g in gap) else None
    c5 = claim_line(
        "Claim 5 (without BN a network can hardly learn from D_rand, with BN it can)", agrees5,
        f"Clean test accuracy after training on D_rand: BN {', '.join(pct(v) for v in bn)}, no BN "
        f"{', '.join(pct(v) for v in nobn)} (seeds {seeds}; agreement needs BN ahead by > 5 points in every seed). "
        "Diagnostic outside the protocol, BN with batch statistics (whole test set): "
        f"{', '.join(pct(diags[('d_rand', sd)]['batch_y']) for sd in seeds)}.")
    y_bn, y1_bn = acc("conflicting", "bn"), acc("conflicting", "bn", "shifted_acc")
    y_nb, y1_nb = acc("conflicting", "none"), acc("conflicting", "none", "shifted_acc")
    peak_y1_bn = [max(r["shifted_acc"] for r in read_metrics(runs[("conflicting", "bn", sd)])) for sd in seeds]
    nobn_rf = all(a1 > a for a, a1 in zip(y_nb, y1_nb))
    bn_nrf = all(b - n > 0.05 for b, n in zip(y_bn, y_nb))
    bn_turns = all(p - f > 0.05 for p, f in zip(peak_y1_bn, y1_bn))
    cc = claim_line(
        "Conflicting set (BN follows NRFs later in training, no BN keeps following RFs)",
        nobn_rf and bn_nrf and bn_turns,
        f"Final accuracy vs y (NRFs) / vs y+1 (RFs): BN {', '.join(f'{pct(a)} / {pct(b)}' for a, b in zip(y_bn, y1_bn))} "
        f"(peak vs y+1 {', '.join(pct(p) for p in peak_y1_bn)}); no BN "
        f"{', '.join(f'{pct(a)} / {pct(b)}' for a, b in zip(y_nb, y1_nb))}. Agreement needs, in every seed: no BN "
        "ahead on y+1, BN > 5 points above no BN on y, and BN's y+1 accuracy > 5 points below its peak. "
        "Diagnostic outside the protocol, BN with batch statistics (whole test set), vs y / vs y+1: "
        f"{', '.join(pct(diags[('conflicting', sd)]['batch_y']) + ' / ' + pct(diags[('conflicting', sd)]['batch_y1']) for sd in seeds)}.")
    return [c5, cc]


__all__ = ["FULL", "QUICK", "Settings", "run"]
