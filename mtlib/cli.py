"""python -m mtlib {data fetch, run, score, predict, cache, tensorboard, workbook, sweep, study, bench}."""

from __future__ import annotations

import argparse
import os
import sys


def _offline_defaults() -> None:
    # Loading never reaches the network unless the user asks for it (HF_HUB_OFFLINE=0).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


SET_HELP = "override a config key (the value read as YAML; the keys are listed below)"
CONFIG_KEYS = "config keys (--set KEY=VALUE):"  # the epilog of run and sweep: the list follows when help is shown


class _ConfigKeysHelp(argparse.RawDescriptionHelpFormatter):
    """Help that lists every config key and its one-line help after ``CONFIG_KEYS`` (each setting's own
    description, mtlib.config.run_config); the config, and torch with it, is imported only when help is shown."""

    def add_text(self, text):
        if text == CONFIG_KEYS:
            from mtlib.config.run_config import settings_help

            text = f"{CONFIG_KEYS}\n{settings_help()}"
        super().add_text(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtlib", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    # --debug is accepted after the command too (python -m mtlib run smoke --debug)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
    sub = p.add_subparsers(dest="command", required=True)

    def command(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[debug], **kwargs)

    d = command(sub, "data", help="course data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = command(dsub, "fetch", help="copy/download the course files into the data folder, verifying checksums")
    f.add_argument(
        "--mirror", help="a folder holding the course files (else $MTLIB_DATA_MIRROR, ../shared/data, else download)"
    )
    f.add_argument("--data-dir", help="where to put them (default: $MTLIB_DATA_DIR or ./data)")
    f.add_argument("--no-download", action="store_true", help="never reach the network")

    r = command(sub, "run", help="train and evaluate one config", epilog=CONFIG_KEYS, formatter_class=_ConfigKeysHelp)
    r.add_argument("config", help="a YAML run config or a profile name (smoke, quick, paper)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    r.add_argument("--seed", type=int, help="override the seed")
    r.add_argument("--row", help="apply a row of params/experiments.yaml on top of the config")

    s = command(sub, "score", help="score a prediction file in the course format against a gold file")
    s.add_argument("--task", required=True, help="a task name: sst, para, sts, or one of --task-file")
    s.add_argument("--task-file", help="a YAML of further task declarations (as a config's task_file)")
    s.add_argument("predictions")
    s.add_argument("gold")

    w = command(sub, "workbook", help="run the notebooks in batch with papermill")
    w.add_argument("--profile", default="quick")
    w.add_argument("--only", nargs="*", default=None, help="notebook names or prefixes (e.g. 01 02_baselines)")
    w.add_argument("--out", default="outputs/notebooks")
    w.add_argument("--dry-run", action="store_true", help="list what would run")
    w.add_argument(
        "--workers",
        metavar="N",
        help="processes that train the notebooks' runs before the notebooks "
        "execute (default: 1 on a GPU, one per core up to 4 on a CPU)",
    )

    pr = command(sub, "predict", help="score a run's saved model: course-format predictions (dev: the scores)")
    pr.add_argument("run_dir", help="a run directory (outputs/runs/<name>-<run id>/seed<k>)")
    pr.add_argument("--split", choices=["dev", "test"], default="dev")
    pr.add_argument("--checkpoint", help="default: the run's best.pt (a name inside the run directory, or a path)")
    pr.add_argument(
        "--out",
        help="folder for the files, outside the run (default: <outputs>/predict/<run>/seed<k>/<checkpoint name>/)",
    )

    ca = command(sub, "cache", help="list, verify or prune the outputs' cache (shared phase states, EDA sets)")
    ca.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "verify", "prune"],
        help="list (default); verify each entry's content and source; prune what no run could use",
    )
    ca.add_argument(
        "--outputs", default="outputs", help="the outputs folder whose cache/ to look at (default: outputs)"
    )
    ca.add_argument("--all", action="store_true", help="prune: remove every entry, not only unusable ones")

    tb = command(sub, "tensorboard", help="write TensorBoard event files of runs from their history.jsonl")
    tb.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding them")

    b = command(sub, "bench", help="benchmarks that print what they measured")
    b.add_argument("what", choices=["gradients", "train", "comm", "runs"])
    b.add_argument(
        "--profile", help="gradients, runs: the profile whose model and batches it uses (default quick; runs: gpu)"
    )
    b.add_argument("--seeds", type=int, help="runs: how many runs of the row (default 8 on CUDA, 2 on CPU)")
    b.add_argument("--batches", type=int, help="runs: updates per run (default 30 on CUDA, 3 on CPU)")
    b.add_argument("--repeats", type=int, help="repetitions (medians; default gradients 5, train 3)")
    b.add_argument(
        "--backbone",
        default="minilm-l6",
        choices=["minilm-l6", "bert-base"],
        help="train: the encoder (bert-base: random weights in bert-base-uncased's shape)",
    )
    b.add_argument("--precision", default="auto", help="train: auto, fp32, bf16, fp16 or a list (fp32,bf16)")
    b.add_argument("--steps", type=int, default=3, help="train: batches per task per row and repetition")
    b.add_argument(
        "--rows",
        help="train: comma-separated rows (default: loops, single, pcgrad, gradvac, "
        "compromise, single-padded, pcgrad-padded; also single-eager, single-compiled); runs: the one row "
        "(default pcgrad)",
    )
    b.add_argument("--device", default="auto", help="train: auto, cpu, cuda, cuda:N")
    b.add_argument("--nproc", type=int, default=2, help="comm: processes (torchrun --standalone); runs: workers")
    b.add_argument("--method", default="pcgrad", choices=["pcgrad", "gradvac"], help="comm: the gradient method")

    sw = command(
        sub,
        "sweep",
        help="many runs (rows x seeds, parents first) on an engine: local or a Ray cluster",
        epilog=CONFIG_KEYS,
        formatter_class=_ConfigKeysHelp,
    )
    sw.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this machine (default), in this process or on --workers N processes",
    )
    sw.add_argument("--profile", default="quick")
    sw.add_argument("--rows", nargs="*", default=[], metavar="ROW", help="rows of params/experiments.yaml")
    sw.add_argument(
        "--notebooks", nargs="*", default=[], metavar="NB", help="every row of these notebooks (or prefixes)"
    )
    sw.add_argument("--seeds", nargs="*", type=int, metavar="N", help="default: the profile's seeds")
    sw.add_argument("--out", help="output folder (default: the profile's out_dir; ray: one every node mounts)")
    sw.add_argument("--address", help="ray: an existing cluster (ray start --head ...); default: a local one")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    sw.add_argument("--cpus-per-run", type=float, help="ray: CPUs a run declares (default: its threads, else 1)")
    sw.add_argument("--gpus-per-run", type=float, help="ray: GPUs a run declares (default: 1 where there are GPUs)")
    sw.add_argument("--max-retries", type=int, default=3, help="ray: retries of a run whose worker was lost")
    sw.add_argument(
        "--workers",
        metavar="N",
        help="local: N worker processes, each with cores // N threads (default: one run after another in this process)",
    )
    st = command(
        sub,
        "study",
        help="the decisive study: every claim row x N paired seeds, packed on one device (resumable, shardable)",
        epilog=CONFIG_KEYS,
        formatter_class=_ConfigKeysHelp,
    )
    st.add_argument("--profile", default="gpu")
    st.add_argument(
        "--rows", nargs="*", default=[], metavar="ROW", help="default: every row params/claims.yaml compares"
    )
    st.add_argument("--seeds", type=int, metavar="N", help="the profile's first N seeds (default: all it fixes)")
    st.add_argument("--shard", metavar="I/N", help="train the I-th of N parts of the study (rows dealt round-robin)")
    st.add_argument("--pack", default="auto", metavar="K", help="runs per pack (default auto: from free memory)")
    st.add_argument("--out", help="output folder (default: the profile's out_dir)")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    _offline_defaults()
    args = build_parser().parse_args(argv)
    from mtlib.rundir import RunLocked
    from mtlib.runs.interrupts import raised_on_signals

    try:
        with raised_on_signals():  # SIGTERM too unwinds: locks released, workers stopped, temporary folders removed
            return _dispatch(args)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM, after that clean-up
        return _interrupted(args, e)
    except (ValueError, FileNotFoundError, KeyError, RunLocked, OSError, FloatingPointError) as e:
        if args.debug:
            raise
        # one line per problem; a failed run (a numeric fault, a full disk) exits 1, bad input 2
        lines = getattr(e, "errors", None) or [str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)]
        lines = [part for line in lines for part in str(line).splitlines() if part.strip()] or [type(e).__name__]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        if not args.debug and not getattr(e, "errors", None):
            print("(run with --debug for the traceback)", file=sys.stderr)
        return 1 if isinstance(e, (FloatingPointError, RunLocked)) or type(e) is OSError else 2


def _interrupted(args, err: KeyboardInterrupt) -> int:
    """One line on stderr (and the traceback with --debug): what was running and where the same command
    resumes. 130 for SIGINT, 143 for SIGTERM (mtlib.runs.interrupts)."""
    import traceback

    from mtlib.runs.interrupts import exit_code, message

    if args.debug:
        traceback.print_exception(err)
    fallback = (
        _interrupted_run(args)
        if args.command == "run"
        # else before any run started
        else f"{args.command}; run the same command again to start it over"
        + (" (finished runs are kept)" if args.command in ("sweep", "workbook") else "")
    )
    print(message(err, fallback), file=sys.stderr, flush=True)
    return exit_code(err)


def _interrupted_run(args) -> str:
    """Where ``run`` resumes: its run directory's last.pt, the end of its last finished epoch. The config is
    resolved again (cheap): _dispatch keeps none, and the trainer's files say how far it got."""
    from mtlib.config.run_config import parse_overrides
    from mtlib.runs.interrupts import RESUME
    from mtlib.experiments.resolve import resolve_config
    from mtlib.train.identity import run_dir_for

    try:
        overrides = parse_overrides(args.set)
        if args.seed is not None:
            overrides["seed"] = args.seed
        run_dir = run_dir_for(resolve_config(args.config, row=args.row, **overrides))
    except Exception:  # noqa: BLE001 - interrupted before the config resolved: nothing was written
        return f"run {args.config} before it started; run the same command again to start it"
    if (run_dir / "metrics.json").is_file():
        return f"run {run_dir} after it finished; it is kept: the same command again only reports it"
    if (run_dir / "last.pt").is_file():
        return f"training {run_dir}; {RESUME} from {run_dir / 'last.pt'} (its last finished epoch)"
    return f"training {run_dir} before its first epoch ended; run the same command again to start it over"


def _dispatch(args) -> int:
    if args.command == "data":
        from mtlib.data import fetch

        report = fetch(data_dir=args.data_dir, mirror=args.mirror, download=not args.no_download)
        print(_format_report(report))
        return 0
    if args.command == "score":
        from mtlib import tasks
        from mtlib.data.metrics import metric_name, score_file

        if args.task_file:
            tasks.register(args.task_file)
        value = score_file(args.task, args.predictions, args.gold)
        print(f"{args.task} {metric_name(args.task)} {value:.4f}")
        return 0
    if args.command == "run":
        from mtlib.config.run_config import parse_overrides
        from mtlib.experiments.resolve import resolve_config
        from mtlib.train.trainer import run

        overrides = parse_overrides(args.set)  # every bad --set is reported, not only the first
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = resolve_config(args.config, row=args.row, **overrides)
        run_dir = run(cfg)
        print(run_dir)
        return 0
    if args.command == "workbook":
        from mtlib.runs.workbook import run_workbook

        return run_workbook(args.profile, only=args.only, out_dir=args.out, dry_run=args.dry_run, workers=args.workers)
    if args.command == "predict":
        from mtlib.train.rescore import predict_run, report_lines

        print("\n".join(report_lines(predict_run(args.run_dir, args.split, args.checkpoint, args.out), args.split)))
        return 0
    if args.command == "cache":
        from mtlib.config.run_config import resolve_path
        from mtlib.train.caches import cache_command

        print("\n".join(cache_command(args.action, resolve_path(args.outputs), everything=args.all)))
        return 0
    if args.command == "tensorboard":
        from mtlib.train.tensorboard_events import convert_runs

        for run_dir, done in convert_runs(args.run_dirs):
            print(f"{run_dir}: {done}")
        return 0
    if args.command == "study":  # exit status 1 when any run failed
        from mtlib.runs.study import study_command

        return study_command(args)
    if args.command == "sweep":  # exit status 1 when any run failed
        from mtlib.runs.sweep import sweep_command

        return sweep_command(args)
    if args.command == "bench" and args.what == "comm":  # all-reduce cost of N processes (mtlib.bench.comm)
        from mtlib.bench.comm import bench_comm

        return bench_comm(args.profile or "quick", args.nproc, args.repeats or 10, args.method)
    if args.command == "bench":
        from mtlib.bench import main as bench_main

        repeats = args.repeats or (5 if args.what == "gradients" else 3)
        return bench_main(
            args.what,
            profile=args.profile or ("gpu" if args.what == "runs" else "quick"),
            repeats=repeats,
            backbone=args.backbone,
            precision=args.precision,
            steps=args.steps,
            rows=args.rows,
            device=args.device,
            seeds=args.seeds,
            processes=args.nproc,
            batches=args.batches,
        )
    raise AssertionError(args.command)


def _format_report(report: dict) -> str:
    """One line per kind of outcome; file lists are counted, not listed (they run to hundreds)."""
    lines = []
    for key, value in report.items():
        if isinstance(value, (list, tuple)):
            shown = ", ".join(map(str, value[:4])) + (f", ... ({len(value)} in all)" if len(value) > 4 else "")
            lines.append(f"{key}: {len(value)} file(s){': ' + shown if value else ''}")
        elif isinstance(value, dict) and key == "unavailable":
            from mtlib.data.sources import OPTIONAL_FILES

            optional = [name for name in value if name in OPTIONAL_FILES]
            if optional:  # expected offline (the shared data lacks them): one quiet line, no network error text
                lines.append(f"optional, not available here: {', '.join(optional)} (the Quora subsets are used)")
            for name, why in value.items():
                if name not in OPTIONAL_FILES:
                    lines.append(f"unavailable: {name} ({why.split(': ', 1)[-1][:80]})")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
