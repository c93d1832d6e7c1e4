"""What a run will cost (parameters, FLOPs, memory, CPU time), estimated before it is queued."""

from pydantic import BaseModel, ConfigDict

from core.specs.run import D_VOCAB, RunSpec



CPU_GFLOPS = 75.0  # effective fp32 training throughput of the reference 2-core CPU (290 ms per paper step)
ADAM_BYTES_PER_PARAM = 16  # fp32 weight, gradient and two moments


class Budget(BaseModel):
    """What a run will cost, estimated before it is queued."""

    model_config = ConfigDict(frozen=True)

    n_params: int  # every parameter, frozen ones included
    tokens_per_step: int  # batch_size * (n_ctx - 1) positions fed to the model
    flops_per_step: int  # 6 * n_params * tokens_per_step (forward + backward, attention products ignored)
    train_bytes: int  # fp32 activations kept for backward + weights, gradients and Adam moments
    snapshot_bytes: int  # every probe-set attention snapshot of the run, float16, before compression
    est_seconds_cpu: float  # steps * flops_per_step at cpu_gflops
    cpu_gflops: float


def count_params(spec: RunSpec) -> int:
    """The exact parameter count of the model core.ml builds for ``spec``."""
    m, d = spec.model, spec.model.d_model
    bias = int(m.bias)
    positions = spec.n_ctx * d if m.pos_encoding in ("learned", "frozen") else 0
    per_layer = 4 * d * d + 2 * d * m.d_mlp + bias * (4 * d + m.d_mlp + d)
    norms = (2 * m.n_layers + 1) * d * (1 + bias)
    return D_VOCAB * d + positions + m.n_layers * per_layer + norms + d * D_VOCAB + bias * D_VOCAB


def estimate_budget(spec: RunSpec, *, gflops: float = CPU_GFLOPS) -> Budget:
    """Parameters, compute, memory and time of ``spec``; rough except ``n_params``, which is exact."""
    m, t, p = spec.model, spec.train, spec.problem
    n_params = count_params(spec)
    T = spec.n_ctx - 1  # input positions: the last token is only ever a target
    tokens = t.batch_size * T
    flops = 6 * n_params * tokens
    per_layer = 10 * m.d_model + 2 * m.d_mlp + 3 * m.n_heads * T  # floats kept per position
    activations = 4 * tokens * (m.n_layers * per_layer + 2 * m.d_model + 3 * D_VOCAB)
    n_probe = p.probe_per_len * (p.width_len - p.min_len + 1)
    n_snapshots = t.steps // t.snapshot_every + 1
    snapshot = 2 * m.n_layers * m.n_heads * n_probe * spec.n_ctx * spec.n_ctx
    return Budget(
        n_params=n_params,
        tokens_per_step=tokens,
        flops_per_step=flops,
        train_bytes=activations + ADAM_BYTES_PER_PARAM * n_params,
        snapshot_bytes=n_snapshots * snapshot,
        est_seconds_cpu=t.steps * flops / (gflops * 1e9),
        cpu_gflops=gflops,
    )
