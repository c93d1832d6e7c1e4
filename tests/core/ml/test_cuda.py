"""The CUDA path (`--set device=cuda`): a GPU trains, evaluates, snapshots and checkpoints as the CPU does.

CI has no GPU, so this file skips there (and on any machine where torch sees no CUDA device); on a
GPU machine run it with ``pytest tests/core/ml/test_cuda.py``. The model is always initialised on
the CPU from the seed and then moved, so a CPU run and a CUDA run start from the same weights and
walk the same batches; they part only by floating-point rounding.
"""

from __future__ import annotations

import pytest
import torch

from core.ml import checkpoints
from core.ml.evaluate import attention_patterns, teacher_forced
from core.ml.train import build_model, train
from core.problems import build_dataset
from core.snapshots import unpack

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (CI has none)")

CUDA = torch.device("cuda")


def test_the_same_weights_give_the_same_logits_and_patterns_on_cuda(tiny_spec):
    spec = tiny_spec(n_heads=2, d_model=32)
    data = build_dataset(spec.problem)
    cpu = build_model(spec, torch.device("cpu")).eval()
    gpu = build_model(spec, CUDA).eval()
    tokens = torch.from_numpy(data.probe_tokens).long()  # [N, W]
    with torch.no_grad():
        expected = cpu(tokens)  # [N, W, d_vocab]
        fused = gpu(tokens.to(CUDA)).cpu()
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)
    on_cpu = attention_patterns(cpu, data.probe_tokens, device=torch.device("cpu"))  # [N, layers, H, W, W]
    on_gpu = attention_patterns(gpu, data.probe_tokens, device=CUDA)
    torch.testing.assert_close(torch.as_tensor(on_gpu), torch.as_tensor(on_cpu), atol=1e-5, rtol=1e-4)


def test_a_cuda_run_follows_the_cpu_run_and_its_records_load_on_the_cpu(tiny_spec, recorder):
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = recorder()
        train(tiny_spec(device=device, steps=24, eval_every=12, snapshot_every=12), runs[device])
    cpu, gpu = runs["cpu"], runs["cuda"]
    test_acc = {name: {s: v["test/seq_acc"] for s, v in run.metric_calls if "test/seq_acc" in v} for name, run in runs.items()}
    assert test_acc["cuda"].keys() == test_acc["cpu"].keys() == {0, 12, 24}
    for step, value in test_acc["cpu"].items():
        assert test_acc["cuda"][step] == pytest.approx(value, abs=0.05)  # a rounding may flip a row or two

    final_cpu, final_gpu = cpu.weights(24, checkpoints.WEIGHTS), gpu.weights(24, checkpoints.WEIGHTS)
    assert all(tensor.device.type == "cpu" for tensor in final_gpu.values())  # from_bytes maps to the cpu
    for name, tensor in final_cpu.items():
        torch.testing.assert_close(final_gpu[name], tensor, atol=1e-3, rtol=1e-3)

    on_gpu, on_cpu = unpack(*gpu.snapshots[24]), unpack(*cpu.snapshots[24])  # float16 patterns
    assert on_gpu.shape == on_cpu.shape
    assert abs(on_gpu.astype("float32") - on_cpu.astype("float32")).max() < 1e-2
    assert {k for _, v in gpu.metric_calls for k in v} == {k for _, v in cpu.metric_calls for k in v}


def test_a_cuda_run_resumed_from_its_checkpoint_ends_where_the_whole_run_ends(tiny_spec, recorder):
    spec = tiny_spec(device="cuda", dropout=0.1, steps=12, checkpoint_every=6)
    whole = recorder()
    train(spec, whole)
    first = recorder(stop_after=6)
    train(spec, first)
    rest = recorder()
    train(spec, rest, resume=first.checkpoints[(6, checkpoints.RESUME)])  # carries the CUDA generator
    for name, tensor in whole.weights(12).items():
        torch.testing.assert_close(rest.weights(12)[name], tensor, atol=1e-5, rtol=1e-5)


def test_teacher_forced_accuracy_is_the_same_on_cuda(tiny_spec):
    spec = tiny_spec()
    data = build_dataset(spec.problem)
    model = build_model(spec, torch.device("cpu"))
    tokens, lengths = data.split("test")
    on_cpu = teacher_forced(model, tokens, lengths, loss_on="all", device=torch.device("cpu"))
    on_gpu = teacher_forced(model.to(CUDA), tokens, lengths, loss_on="all", device=CUDA)
    assert on_gpu.rows == on_cpu.rows
    assert on_gpu.tok_correct == on_cpu.tok_correct
