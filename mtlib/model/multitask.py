"""MultitaskModel: one shared encoder, one head per task, the two pair encodings, the losses.

Pair encodings (docs/original.md §2):
- ``concat_sentences`` (the BaseModel): one sequence ``[CLS] s1 [SEP] s2 [SEP]`` with token types 0/1 (the
  encoder's own tokenizer decides: RoBERTa's is ``<s> s1 </s></s> s2 </s>`` without token types).
  The original glued two separately padded encodings (padding inside the sequence, all-zero token
  types), which made predictions depend on the batch; we use the tokenizer's pair encoding instead.
- ``concat_embed``: each sentence encoded alone, pooled embeddings concatenated [e1; e2] (the study's
  first rows); a regression task's output is scaled into its label range by a sigmoid there (STS:
  5*sigmoid(x), as in that commit).

Each task's output size, loss and prediction follow from its declared kind (``mtlib.tasks``): multiclass,
one logit per class, cross-entropy, argmax; binary, one logit, binary cross-entropy, sigmoid > 0.5;
regression, one output, mean squared error.
"""

from __future__ import annotations

import contextlib
import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlib import tasks as task_records
from mtlib.model.heads import build_head, count_parameters
from mtlib.model.unpadded import supports_unpadded, unpadded_forward

PAIR_MODES = ("concat_sentences", "concat_embed")
POOLINGS = ("pooler", "cls", "mean")
HEAD_TASKS = ("all", "sts")  # which tasks get a recurrent head ("all", or one task's name); the others keep the MLP


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape: what MultitaskModel needs, nothing of the training run."""

    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(task_records.course()))  # the course's by default
    pooling: str = "pooler"
    pair_mode: str = "concat_sentences"
    n_hidden_layers: int = 0
    hidden_dropout: float = 0.2
    head: str = "mlp"
    head_size: int = 128
    head_cls: bool = False
    head_tasks: str = "all"
    pals: bool = False
    pal_size: int = 132
    pal_heads: int = 12
    unpad: bool = False  # a BERT encoder computes on the real tokens only (mtlib.model.unpadded)
    dropout_rng: str = "torch"  # keyed: masks hashed from padded coordinates (mtlib.model.keyed_dropout)

    @classmethod
    def of(cls, config) -> "ModelConfig":
        """The model part of any object with these attributes (a RunConfig)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def keyed_seed(seed: int, *key) -> int:
    """A seed for one part of a run, from the run's seed and a key (a task, a batch index): rows trained with the
    same seed draw the same numbers for the same part, whatever else they do, so their paired differences
    carry no noise that the seed could have fixed."""
    text = "\0".join(map(str, (seed, *key))).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


@contextlib.contextmanager
def keyed_rng(seed: int | None, *key):
    """torch's CPU generator seeded by ``keyed_seed(seed, *key)`` inside, restored after (nothing when None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(keyed_seed(seed, *key))
        yield


class MultitaskModel(nn.Module):
    def __init__(self, cfg: ModelConfig, encoder: nn.Module, tokenizer=None, init_seed: int | None = None):
        """``init_seed``: each task's head (and the PALs) start from numbers keyed by it and the task, the same
        in every row of that seed (``keyed_rng``); None: from torch's generator as it stands."""
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            cfg = ModelConfig.of(cfg)
        self.cfg = cfg
        self.tasks = list(cfg.tasks)
        self.encoder = encoder
        self.tokenizer = tokenizer
        if cfg.pooling == "pooler" and getattr(encoder, "pooler", None) is None:  # DeBERTa, ELECTRA: no pooler
            raise ValueError(
                f"config: key 'pooling' is 'pooler' but this encoder ({type(encoder).__name__}) has no "
                "pooler layer; expected 'cls' or 'mean' for it"
            )
        hidden = encoder.config.hidden_size
        self.records = {t: task_records.get(t) for t in self.tasks}
        self.head_kinds = {t: (cfg.head if cfg.head_tasks in ("all", t) else "mlp") for t in self.tasks}
        self.heads = nn.ModuleDict()
        for task, kind in self.head_kinds.items():
            pair_embed = cfg.pair_mode == "concat_embed" and self.records[task].pair
            with keyed_rng(init_seed, "head", task):
                self.heads[task] = build_head(
                    kind,
                    in_dim=2 * hidden if pair_embed else hidden,
                    hidden_size=hidden,
                    out_dim=self.records[task].out_dim,
                    n_hidden_layers=cfg.n_hidden_layers,
                    dropout=cfg.hidden_dropout,
                    size=cfg.head_size,
                    use_cls=cfg.head_cls,
                )
        # keyed dropout (packs) hashes padded coordinates: those runs keep the padded layout (mtlib.model.unpadded)
        self.unpadded = cfg.unpad and supports_unpadded(encoder) and cfg.dropout_rng == "torch"
        if cfg.pals:
            from mtlib.model.pals import add_pals

            with keyed_rng(init_seed, "pals"):
                add_pals(self.encoder, self.tasks, size=cfg.pal_size, num_heads=cfg.pal_heads)

    def set_dropout(self, p: float) -> None:
        """The heads' dropout (a phase may change it; the encoder keeps its own)."""
        for module in self.heads.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    # ---- parameter groups
    def pal_parameters(self) -> list[nn.Parameter]:
        if not self.cfg.pals:
            return []
        from mtlib.model.pals import pal_parameters

        return pal_parameters(self.encoder)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Encoder parameters shared by all tasks (PALs are task-specific, so excluded)."""
        pal_ids = {id(p) for p in self.pal_parameters()}
        return [p for p in self.encoder.parameters() if id(p) not in pal_ids]

    def parameter_counts(self) -> dict[str, int]:
        counts = {"encoder": sum(p.numel() for p in self.shared_parameters())}
        counts.update({f"head_{t}": count_parameters(h) for t, h in self.heads.items()})
        counts["pals"] = sum(p.numel() for p in self.pal_parameters())
        counts["total"] = count_parameters(self)
        counts["trainable"] = count_parameters(self, trainable_only=True)
        return counts

    # ---- forward
    def _pal(self, task: str):
        if not self.cfg.pals:
            return nullcontext()
        from mtlib.model.pals import pal_task

        return pal_task(self.encoder, task)

    mask_4d = False  # packed runs (mtlib.runs.pack): the encoder gets a 4D additive mask, which vmap can batch
    pack = None  # packed runs: the run's handle on its pack

    def encode(self, task: str, enc: dict[str, Tensor], inputs_embeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(token_states [B, L, H], pooled [B, H]) of one tokenized batch."""
        mask = enc["attention_mask"]
        if self.mask_4d:  # what transformers' eager attention builds from the 2D mask, built here
            length = mask.shape[-1]
            blocked = (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            mask = blocked.expand(mask.shape[0], 1, length, length)
        if self.unpadded:
            with self._pal(task):
                states, pooler_output = unpadded_forward(
                    self.encoder,
                    mask,
                    input_ids=enc["input_ids"] if inputs_embeds is None else None,
                    token_type_ids=enc.get("token_type_ids"),
                    inputs_embeds=inputs_embeds,
                    pals=getattr(self.encoder, "pals", None),
                )
            return states, self._pooled(states, pooler_output, mask)
        kwargs = dict(attention_mask=mask, token_type_ids=enc.get("token_type_ids"))
        if inputs_embeds is None:
            kwargs["input_ids"] = enc["input_ids"]
        else:
            kwargs["inputs_embeds"] = inputs_embeds
        with self._pal(task):
            out = self.encoder(**kwargs)
        pooler_output = getattr(out, "pooler_output", None)  # DeBERTa, ELECTRA: none
        return out.last_hidden_state, self._pooled(out.last_hidden_state, pooler_output, enc["attention_mask"])

    def _pooled(self, states: Tensor, pooler_output: Tensor | None, attention_mask: Tensor) -> Tensor:
        if self.cfg.pooling == "pooler":
            return pooler_output
        if self.cfg.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, task: str, batch: dict, inputs_embeds: Tensor | None = None) -> Tensor:
        """Raw outputs: [B, K] logits (multiclass), [B] logit (binary), [B] score (regression)."""
        head = self.heads[task]
        if "enc2" in batch:  # concat_embed pair: two encodings
            _, e1 = self.encode(task, batch["enc"])
            _, e2 = self.encode(task, batch["enc2"])
            out = head(torch.cat([e1, e2], dim=-1), None, None)
        else:
            states, pooled = self.encode(task, batch["enc"], inputs_embeds)
            out = head(pooled, states, batch["enc"]["attention_mask"])
        record = self.records[task]
        if record.out_dim == 1:
            out = out.squeeze(-1)
            if record.kind == "regression" and self.cfg.pair_mode == "concat_embed":
                lo, hi = record.label_range
                out = lo + (hi - lo) * torch.sigmoid(out) if lo else hi * torch.sigmoid(out)
        return out

    def input_embeddings(self, batch: dict) -> Tensor:
        """Word embeddings of the batch's tokens: what SMART perturbs."""
        return self.encoder.get_input_embeddings()(batch["enc"]["input_ids"])

    @staticmethod
    def loss(task: str, output: Tensor, labels: Tensor) -> Tensor:
        output, kind = output.float(), task_records.get(task).kind
        if kind == "multiclass":
            return F.cross_entropy(output, labels.long())
        if kind == "binary":
            return F.binary_cross_entropy_with_logits(output, labels.float())
        return F.mse_loss(output, labels.float())

    @staticmethod
    def predictions(task: str, output: Tensor) -> Tensor:
        """Class id (argmax), 0/1 (sigmoid > 0.5, as torch.round sends 0.5 to 0), or the raw score."""
        output, kind = output.float(), task_records.get(task).kind
        if kind == "multiclass":
            return output.argmax(-1)
        if kind == "binary":
            return (torch.sigmoid(output) > 0.5).long()
        return output


def smart_kind(task: str) -> str:
    """SMART's divergence for a task's outputs: classification (softmax), binary (sigmoid) or regression."""
    kind = task_records.get(task).kind
    return "classification" if kind == "multiclass" else kind
