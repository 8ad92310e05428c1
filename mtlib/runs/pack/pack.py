"""A pack: its members' models, the turns they take and the rounds computed for them."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlib.runs.pack.compute import Compute, PackedLoss, Request, prepare_member
from mtlib.runs.pack.turns import Turns


class Pack:
    def __init__(self, size: int):
        self.models: dict[int, torch.nn.Module] = {}
        self.compute = Compute()
        self.turns = Turns(list(range(size)), lambda requests: self.compute.run(requests, self.models))

    def member(self, k: int) -> "Member":
        return Member(self, k)


class Member:
    """One run's handle on its pack: the trainer attaches its model, ``BatchLoss`` and ``predict`` call it."""

    def __init__(self, pack: Pack, k: int):
        self.pack, self.k = pack, k
        self.params: dict[str, torch.nn.Parameter] = {}

    def attach(self, model: torch.nn.Module) -> None:
        prepare_member(model)
        model.pack = self
        self.params = dict(model.named_parameters())
        self.pack.models[self.k] = model

    def begin(self) -> None:
        self.pack.turns.begin(self.k)

    def leave(self) -> None:
        self.pack.models.pop(self.k, None)
        self.pack.turns.leave(self.k)

    def loss(self, model, task: str, batch: dict, key: int | None, precision: str) -> PackedLoss:
        trained = self.pack.turns.submit(self.k, Request("train", task, batch, key, precision))
        return PackedLoss(trained, self.params)

    def forward(self, model, task: str, batch: dict, precision: str) -> Tensor:
        return self.pack.turns.submit(self.k, Request("eval", task, batch, None, precision))
