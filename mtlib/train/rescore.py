"""Scoring a saved model (the original's ``--option test``): a run's checkpoint on dev or test, in the course format.

The model is rebuilt from the run's config.yaml and must fit the checkpoint key for key and shape for shape;
dev is the set the run's own final evaluation scored (all of dev, ``final_dev_max`` of it, or the per-epoch
subsample), batched and scored by the same ``evaluate``, its report half scored as the trainer scores it, so a
run's best.pt gives back its metrics.json.

Predicting never modifies the run: the files go to a folder of their own (``default_out_dir``), the run's
lock is held shared while its checkpoint is read, and a run that a process is still training is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtlib.config.run_config import RunConfig
from mtlib.data import parse
from mtlib.data.metrics import metric_name, write_predictions
from mtlib.data.sources import sha256_file
from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.rundir import RunDirectory, check_fits, model_state, read_config
from mtlib.rundir.files import BEST, IDENTITY
from mtlib.train.evaluate import evaluate, predict, reported_scores
from mtlib.train.run_data import dev_parts
from mtlib.machine.runtime import resolve_device, resolve_precision

SPLITS = ("dev", "test")


def run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    raw = read_config(run_dir)
    if not raw:
        raise FileNotFoundError(
            f"{path} is missing or empty; expected a run directory (outputs/runs/<name>-<run id>/seed<k>)"
        )
    return RunConfig.from_dict(raw, source=str(path))


def dev_examples(cfg: RunConfig) -> tuple[dict, dict, dict]:
    """(final, subsample, report ids) per task: the rows the trainer's final evaluation scores, grouped as it
    groups them, and which of them it reports (``run_data.dev_parts``)."""
    parts = {t: dev_parts(cfg, t, parse.load_split(t, "dev", cfg.data_dir)) for t in cfg.tasks}
    return (
        {t: p[0] for t, p in parts.items()},
        {t: p[1] for t, p in parts.items()},
        {t: p[2] for t, p in parts.items()},
    )


def checkpoint_path(run_dir: Path, checkpoint: str | None) -> Path:
    """``best.pt`` of the run by default; a relative name is looked up in the run directory first."""
    if checkpoint is None:
        return run_dir / BEST
    path = Path(checkpoint).expanduser()
    return run_dir / path if not path.is_absolute() and (run_dir / path).exists() else path


def load_model(cfg: RunConfig, path: Path, device, what: str) -> MultitaskModel:
    encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
    model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer)
    state = model_state(path, "cpu", remedy="Is the run finished (metrics.json), or pass --checkpoint.")
    check_fits(state, model.state_dict(), path, what)
    model.load_state_dict(state)
    return model.to(device)


def data_changes(run_dir: Path, cfg: RunConfig, split: str) -> list[str]:
    """Data files that differ from the ones this run read (its identity.json checksums)."""
    try:
        trained_on = json.loads((run_dir / IDENTITY).read_text(encoding="utf-8")).get("data", {})
    except (OSError, json.JSONDecodeError):
        return []
    files = [
        f
        for t in cfg.tasks
        if parse.split_available(t, split, cfg.data_dir)
        for f in parse.split_files(t, split, cfg.data_dir)
    ]
    return [
        f"{f} differs from the file this run read (sha256 {trained_on[f.name][:12]}...)"
        for f in files
        if f.name in trained_on and sha256_file(f) != trained_on[f.name]
    ]


def default_out_dir(run_dir: Path, checkpoint: Path) -> Path:
    """``<outputs>/predict/<name>-<run id>/seed<k>/<checkpoint name>/``, beside the runs folder, not in the run."""
    run_dir = run_dir.resolve()
    return run_dir.parents[2] / "predict" / run_dir.parent.name / run_dir.name / checkpoint.stem


def predict_run(
    run_dir: str | Path, split: str = "dev", checkpoint: str | None = None, out_dir: str | Path | None = None
) -> dict:
    """Predict ``split`` with a run's checkpoint; writes ``<task>-<split>-output.csv`` files into ``out_dir``
    (default ``default_out_dir``), never into the run.

    Returns {"scores": {task: score, "mean": ...} (dev only, else None), "files": [...], "skipped": [...],
    "warnings": [...], "checkpoint": path}.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    with RunDirectory(run_dir).reading():  # refused while the run trains; the model is read whole under it
        model = load_model(
            cfg,
            path,
            device,
            what=f"{run_dir / 'config.yaml'} (backbone {cfg.backbone}, "
            f"pals {cfg.pals}, head {cfg.head}, pair_mode {cfg.pair_mode})",
        )
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir, path)
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve() in out_dir.resolve().parents:
        raise ValueError(
            f"--out {out_dir} is inside the run {run_dir}; predictions go elsewhere, so the run's own "
            "files keep matching its metrics.json"
        )
    result = {
        "scores": None,
        "files": [],
        "skipped": [],
        "warnings": data_changes(run_dir, cfg, split),
        "checkpoint": str(path),
    }
    if split == "dev":
        examples, sub, report = dev_examples(cfg)  # grouped as the trainer's final evaluation
        full, preds = evaluate(model, examples, cfg.eval_batch_size, device, precision, dev_sub=sub)
        reported = reported_scores(examples, preds, report)
        result["scores"] = reported if reported is not None else full  # metrics.json's dev
        result["scores_full"] = full if reported is not None else None  # its dev_full
    else:
        examples, preds = {}, {}
        for task in cfg.tasks:
            if not parse.split_available(task, "test", cfg.data_dir):
                result["skipped"].append(f"{task}: no test file in the data folder")
                continue
            examples[task] = parse.load_split(task, "test", cfg.data_dir)
            preds[task] = predict(model, task, examples[task], cfg.eval_batch_size, device, precision)
    for task, values in preds.items():
        file = out_dir / f"{task}-{split}-output.csv"
        result["files"].append(str(write_predictions(file, task, [ex.id for ex in examples[task]], values)))
    return result


def report_lines(result: dict, split: str) -> list[str]:
    """What ``python -m mtlib predict`` prints: warnings, the scores (dev), where the files went."""
    lines = [f"warning: {w}" for w in result["warnings"]]
    scores = result["scores"] or {}
    lines += [f"{split} {task} {metric_name(task)} {value:.4f}" for task, value in scores.items() if task != "mean"]
    if scores:
        lines.append(f"{split} mean {scores['mean']:.4f}")
    lines += [f"skipped {s}" for s in result["skipped"]]
    lines += [f"wrote {f}" for f in result["files"]]
    return lines
