"""The peer: a plain transformers loop, as one would write it without mtlib.

A ``BertModel`` (a copy of the benchmarked encoder), one linear head per task on the pooler output, the
batch tokenized with ``padding=True`` at every step, ``torch.optim.AdamW`` with its defaults for the device,
autocast in the benchmarked precision. Same sentences, same batch sizes, same losses as mtlib's rows.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mtlib import tasks as task_records
from mtlib.machine.runtime import autocast


class PlainLoop:
    def __init__(self, encoder: nn.Module, tokenizer, device: torch.device, precision: str, lr: float = 1e-5):
        self.encoder = copy.deepcopy(encoder).to(device).train()
        hidden = self.encoder.config.hidden_size
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, r.out_dim) for t, r in task_records.course().items()}).to(
            device
        )
        params = [*self.encoder.parameters(), *self.heads.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=lr, eps=1e-6, weight_decay=0.0)
        self.tokenizer, self.device, self.precision = tokenizer, device, precision
        self.tokens = 0

    def step(self, task: str, examples) -> float:
        columns = [[ex.sentences[j] for ex in examples] for j in range(len(examples[0].sentences))]
        enc = self.tokenizer(*columns, padding=True, truncation=True, max_length=512, return_tensors="pt")
        self.tokens += int(enc["attention_mask"].sum())
        enc = {k: v.to(self.device) for k, v in enc.items()}
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.float32, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            states = self.encoder(**enc)
            pooled = states.pooler_output if states.pooler_output is not None else states.last_hidden_state[:, 0]
            out = self.heads[task](pooled).float()
        kind = task_records.get(task).kind
        if kind == "multiclass":
            loss = F.cross_entropy(out, labels.long())
        elif kind == "binary":
            loss = F.binary_cross_entropy_with_logits(out.squeeze(-1), labels)
        else:
            loss = F.mse_loss(out.squeeze(-1), labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()
