"""Tests for mtlib.model.pals: exact neutrality at init, task selection, checkpoint compatibility, freezing, counts."""

import copy
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from mtlib.model.pals import (
    PALs,
    add_pals,
    freeze_all_but_pals,
    pal_parameter_count,
    pal_parameters,
    pal_task,
    set_pal_task,
)

TASKS = ("sst", "para", "sts")


def _config(attn: str = "eager", **overrides: int) -> BertConfig:
    sizes = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    sizes.update(overrides)
    return BertConfig(vocab_size=100, attn_implementation=attn, **sizes)


def _models(attn: str = "eager", size: int = 12, num_heads: int = 3) -> tuple[BertModel, BertModel]:
    """A plain model and an identical copy with PALs."""
    torch.manual_seed(0)
    plain = BertModel(_config(attn)).eval()
    wrapped = copy.deepcopy(plain)
    add_pals(wrapped, TASKS, size=size, num_heads=num_heads)
    return plain, wrapped.eval()


def _batch(padded: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (3, 6), generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    if padded:
        mask[1, 4:] = 0
        mask[2, 2:] = 0
    return {"input_ids": input_ids, "attention_mask": mask}


def _perturb_up(model: BertModel, task: str) -> None:
    with torch.no_grad():
        model.pals.up[task].weight.normal_(std=0.5)
        model.pals.up[task].bias.normal_(std=0.5)


def _out(model: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).last_hidden_state


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [True, False])
def test_exactly_neutral_at_init(attn: str, padded: bool) -> None:
    plain, wrapped = _models(attn)
    batch = _batch(padded)
    expected = plain(**batch)
    for task in (None, *TASKS):
        with pal_task(wrapped, task):
            got = wrapped(**batch)
        assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
        assert torch.equal(got.pooler_output, expected.pooler_output)


def test_neutral_at_init_with_default_sizes() -> None:
    plain, wrapped = _models(size=132, num_heads=12)
    set_pal_task(wrapped, "sts")
    assert torch.equal(_out(wrapped, _batch()), _out(plain, _batch()))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_perturbed_task_changes_only_that_task(attn: str) -> None:
    plain, wrapped = _models(attn)
    _perturb_up(wrapped, "para")
    batch = _batch()
    expected = _out(plain, batch)
    for task in ("sst", "sts", None):
        set_pal_task(wrapped, task)
        assert torch.equal(_out(wrapped, batch), expected)
    set_pal_task(wrapped, "para")
    assert not torch.allclose(_out(wrapped, batch), expected, atol=1e-3)


def test_eager_and_sdpa_masks_agree() -> None:
    # The PAL attention must respect the padding mask whatever form the layer receives it in.
    _, eager = _models("eager")
    _, sdpa = _models("sdpa")
    for model in (eager, sdpa):
        torch.manual_seed(3)
        for task in TASKS:
            _perturb_up(model, task)
            for attention in model.pals.attention:
                with torch.no_grad():
                    attention[task].query.weight.normal_(std=0.3)
    batch = _batch()
    for task in TASKS:
        set_pal_task(eager, task)
        set_pal_task(sdpa, task)
        torch.testing.assert_close(_out(eager, batch), _out(sdpa, batch), rtol=1e-4, atol=1e-5)


def test_padding_does_not_leak_into_real_tokens() -> None:
    # Row 2 alone (length 2) must equal row 2 inside a padded batch, with an active, perturbed PAL.
    _, wrapped = _models()
    _perturb_up(wrapped, "sst")
    set_pal_task(wrapped, "sst")
    batch = _batch()
    full = _out(wrapped, batch)[2, :2]
    alone = _out(wrapped, {k: v[2:, :2] for k, v in batch.items()})[0]
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-5)


def test_pal_task_context_restores_and_validates() -> None:
    _, wrapped = _models()
    set_pal_task(wrapped, "sst")
    with pal_task(wrapped, "sts"):
        assert wrapped.pals.active_task == "sts"
    assert wrapped.pals.active_task == "sst"
    with pytest.raises(ValueError, match="sst, para, sts"):
        set_pal_task(wrapped, "mnli")
    with pytest.raises(ValueError, match="add_pals"):
        set_pal_task(BertModel(_config()), "sst")


def test_backbone_names_unchanged_and_plain_checkpoint_loads() -> None:
    plain, wrapped = _models()
    plain_keys = set(plain.state_dict())
    wrapped_keys = set(wrapped.state_dict())
    assert "encoder.layer.0.attention.output.dense.weight" in wrapped_keys
    assert plain_keys <= wrapped_keys
    assert all(k.startswith("pals.") for k in wrapped_keys - plain_keys)

    fresh = BertModel(_config())
    add_pals(fresh, TASKS, size=12, num_heads=3)
    result = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("pals.") for k in result.missing_keys)
    assert set(result.missing_keys) == wrapped_keys - plain_keys


def test_freeze_all_but_pals_then_step_changes_only_pals() -> None:
    _, wrapped = _models()
    wrapped.train()
    trainable = freeze_all_but_pals(wrapped)
    assert trainable == pal_parameter_count(wrapped)["total"]
    before = {k: v.clone() for k, v in wrapped.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    set_pal_task(wrapped, "sst")
    wrapped(**_batch()).last_hidden_state.pow(2).mean().backward()
    optimizer.step()
    after = wrapped.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # At init only U_sst receives gradient (everything upstream of it is multiplied by U = 0); weight decay
    # off, as in the original's AdamW, else it would also move the zero-gradient sst parameters.
    assert changed == {"pals.up.sst.weight", "pals.up.sst.bias"}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    _, wrapped = _models()
    for task in TASKS:
        _perturb_up(wrapped, task)
    torch.save(wrapped.state_dict(), tmp_path / "pal.pt")
    fresh = BertModel(_config())
    add_pals(fresh, TASKS, size=12, num_heads=3)
    fresh.load_state_dict(torch.load(tmp_path / "pal.pt"))
    fresh.eval()
    batch = _batch()
    for task in (None, *TASKS):
        set_pal_task(wrapped, task)
        set_pal_task(fresh, task)
        assert torch.equal(_out(fresh, batch), _out(wrapped, batch))


def test_deepcopy_keeps_its_own_pals() -> None:
    _, wrapped = _models()
    set_pal_task(wrapped, "sst")
    clone = copy.deepcopy(wrapped)
    _perturb_up(clone, "sst")  # must not affect the original's hooks
    plain_out = _out(wrapped, _batch())
    set_pal_task(wrapped, None)
    assert torch.equal(plain_out, _out(wrapped, _batch()))
    assert not torch.allclose(_out(clone, _batch()), plain_out, atol=1e-3)


def test_gradient_reaches_all_pal_parts_once_up_moves() -> None:
    _, wrapped = _models()
    _perturb_up(wrapped, "sts")
    set_pal_task(wrapped, "sts")
    wrapped(**_batch()).last_hidden_state.pow(2).mean().backward()
    pals: PALs = wrapped.pals
    for name, param in pals.named_parameters():
        uses_sts = ".sts." in f".{name}."
        has_grad = param.grad is not None and bool(param.grad.abs().sum() > 0)
        assert has_grad == uses_sts, name


@pytest.mark.parametrize(
    ("hidden", "layers", "heads", "down_up", "attention"),
    [(768, 12, 12, 610_956, 1_896_048), (384, 6, 12, 305_676, 948_024)],
)
def test_parameter_counts_match_formula(hidden: int, layers: int, heads: int, down_up: int, attention: int) -> None:
    config = _config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=32)
    pals = PALs(config, TASKS)  # the counts do not need a whole BERT
    holder = torch.nn.Module()
    holder.pals = pals
    r, tasks = 132, len(TASKS)
    counts = pal_parameter_count(holder)
    assert counts["down_up"] == tasks * (2 * hidden * r + r + hidden) == down_up
    assert counts["attention"] == 3 * layers * tasks * (r * r + r) == attention
    assert counts["total"] == down_up + attention == sum(p.numel() for p in pal_parameters(holder))


def test_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        add_pals(BertModel(_config()), TASKS, size=130, num_heads=12)
    model = BertModel(_config())
    add_pals(model, TASKS, size=12, num_heads=3)
    with pytest.raises(ValueError, match="already"):
        add_pals(model, TASKS, size=12, num_heads=3)
    with pytest.raises(ValueError, match="'.'"):
        add_pals(BertModel(_config()), ["a.b"], size=12, num_heads=3)
    with pytest.raises(ValueError, match="BERT-style layers"):  # one line the CLI can show
        add_pals(torch.nn.Linear(2, 2), TASKS)
