"""A fixed, stratified split of each dev set into a selection half and a report half.

Choosing the best epoch (and stopping early, and handing a phase over) on the dev data that is then reported
makes the reported score optimistic: the best of several noisy looks. So a run chooses on one half and is
reported on the other (``dev_split: halves``): every per-epoch evaluation reads the selection half (its fixed
subsample, ``dev_subsample``), the final scores that verdicts compare are the report half's, and the whole dev
set is scored too, for the table beside the paper's numbers (the paper chose and reported on all of it).

The split depends on the examples alone, never on the run: within each stratum (a class; for a regression
task the label rounded to a whole number) the examples are ordered by a hash of their task and id and dealt
out in turn, so both halves keep the class balance, every run and seed sees the same halves whatever the file
order, and ``digest`` names the report half's ids (recorded in metrics.json). ``RULE`` names this rule in the
run id: a change to the rule is a change of every run that uses it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from mtlib import tasks as task_records

RULE = "stratified-halves-1"


def stratum(task: str, label) -> object:
    """The class of a classification example; the whole-number bucket of a regression label."""
    return round(float(label)) if task_records.get(task).kind == "regression" else label


def split_halves(task: str, examples: list) -> tuple[list, list]:
    """(selection, report): disjoint, together all of ``examples``, each in file order."""
    strata: dict = defaultdict(list)
    for i, ex in enumerate(examples):
        strata[stratum(task, ex.label)].append(i)
    report: set[int] = set()
    for n, key in enumerate(sorted(strata, key=repr)):
        order = sorted(strata[key], key=lambda i: _rank(task, examples[i].id))
        # strata of odd size alternate which half gets the extra example, so the halves differ by at most one
        report.update(order[(n + 1) % 2 :: 2])
    selection = [ex for i, ex in enumerate(examples) if i not in report]
    return selection, [examples[i] for i in sorted(report)]


def digest(examples: list) -> str:
    """The sha256 of a half's ids (sorted): the same half, the same digest."""
    return hashlib.sha256("\n".join(sorted(str(ex.id) for ex in examples)).encode()).hexdigest()


def _rank(task: str, example_id) -> str:
    return hashlib.sha256(f"{task}\0{example_id}".encode()).hexdigest()
