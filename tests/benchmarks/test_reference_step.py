"""The timing baseline in benchmarks/reference_step.py must be the paper's model and objective, or the
step ratio that train_speed.py prints compares two different computations."""

import pytest

torch = pytest.importorskip("torch")

from benchmarks.reference_step import ReferenceModel, ReferenceStep, after_eoi  # noqa: E402
from core.ml.model import ModelConfig, Transformer  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.problems import build_dataset, supervised_mask  # noqa: E402
from core.specs.overrides import apply_overrides  # noqa: E402


def copy_ours_into_reference(ours: Transformer, reference: ReferenceModel) -> None:
    with torch.no_grad():
        reference.token_emb.weight.copy_(ours.embed.weight)
        reference.pos_emb.weight.copy_(ours.pos_embed.weight)
        for mine, theirs in zip(ours.blocks, reference.blocks):
            theirs.norm_1.weight.copy_(mine.ln1.weight)
            theirs.norm_2.weight.copy_(mine.ln2.weight)
            theirs.qkv.weight.copy_(mine.attn.qkv.weight)
            theirs.output.weight.copy_(mine.attn.out.weight)
            theirs.fc1.weight.copy_(mine.mlp.fc_in.weight)
            theirs.fc2.weight.copy_(mine.mlp.fc_out.weight)
        reference.output_norm.weight.copy_(ours.ln_final.weight)
        reference.output.weight.copy_(ours.unembed.weight)


def test_the_reference_model_is_our_paper_model_with_the_same_weights():
    torch.manual_seed(0)
    ours = Transformer(ModelConfig(norm="paper", pos_encoding="learned", dropout=0.1)).eval()
    reference = ReferenceModel().eval()
    assert sum(p.numel() for p in reference.parameters()) == ours.n_params() == 414_720
    copy_ours_into_reference(ours, reference)
    tokens = torch.randint(0, 64, (8, 34))
    assert torch.allclose(reference(tokens), ours(tokens), atol=1e-5)


def test_the_reference_loss_mask_is_the_paper_objective():
    spec = apply_overrides(get_preset("paper-polynomial"), {})
    data = build_dataset(spec.problem)
    tokens = torch.from_numpy(data.train_tokens[:512]).long()  # [512, W], lengths 1 and 2
    ours = torch.from_numpy(supervised_mask(data.train_lengths[:512], data.width, "all"))
    assert torch.equal(after_eoi(tokens[:, 1:]), ours)


def test_a_reference_step_trains_on_length_sorted_batches_and_cycles_epochs():
    spec = apply_overrides(get_preset("paper-polynomial"), {"n_train_per_len": 8})
    data = build_dataset(spec.problem)  # 16 lengths x 8 rows: one epoch is 2 batches of 64
    step = ReferenceStep(torch.from_numpy(data.train_tokens), batch_size=64)
    losses = [step.step() for _ in range(5)]
    assert all(loss > 0 for loss in losses)
    first = next(iter(step.loader))
    assert torch.equal(first, torch.from_numpy(data.train_tokens[:64]))  # unshuffled
