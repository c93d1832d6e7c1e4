"""Every string that crosses a boundary: hook sites, module names, metric and score keys, job kinds.

The model, the recorder, the database, the web pages and the queue meet only through these strings,
so each is spelled once, here. Hook sites and modules follow TransformerLens (``blocks.1.attn.hook_pattern``);
layers and heads count from 0, as in the model's module tree.

Metric keys are ``SPLIT/NAME`` or ``SPLIT/NAME/L{length}``:  ``test/seq_acc``, ``test/seq_acc/L7``.
Score keys are ``score/ROLE/SCORE/L{layer}H{head}`` with an optional ``/len{length}``:
``score/iteration/peaky_thres/L1H0``, ``score/iteration/peaky_thres/L1H0/len7``.
Both live in the same metrics table, keyed by (run, key, step).
"""

import re

# ---------------------------------------------------------------- problems (core.problems implements them)

PROBLEM_NAMES = ("polynomial", "parity", "binary_copy")
MIXTURE_SEPARATOR = "+"  # "parity+polynomial": a mixture; its data_mix is the share of the first

# ---------------------------------------------------------------- modules (the targets of `trainable`)

TOP_MODULES = ("embed", "pos_embed", "blocks", "ln_final", "unembed")
BLOCK_MODULES = ("ln1", "attn", "ln2", "mlp")  # under blocks.{layer}


def block_module(layer: int, module: str) -> str:
    """``block_module(1, "mlp") -> "blocks.1.mlp"``."""
    if module not in BLOCK_MODULES:
        raise ValueError(f"unknown block module {module!r}; known: {', '.join(BLOCK_MODULES)}")
    return f"blocks.{_index(layer, 'layer')}.{module}"


# ---------------------------------------------------------------- hook sites, in forward order

GLOBAL_SITES = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}
BLOCK_SITES = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "q": "blocks.{layer}.attn.hook_q",  # [batch, pos, head, d_head]
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",  # pre-softmax, causally masked
    "pattern": "blocks.{layer}.attn.hook_pattern",  # [batch, head, query, key], rows sum to 1
    "z": "blocks.{layer}.attn.hook_z",  # per-head attention output before W_O
    "attn_out": "blocks.{layer}.hook_attn_out",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_post": "blocks.{layer}.mlp.hook_post",  # after the nonlinearity
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "resid_post": "blocks.{layer}.hook_resid_post",
}


def hook_name(layer: int | None, site: str) -> str:
    """``hook_name(1, "pattern") -> "blocks.1.attn.hook_pattern"``; ``hook_name(None, "embed") -> "hook_embed"``."""
    if site in GLOBAL_SITES:
        if layer is not None:
            raise ValueError(f"hook site {site!r} has no layer (got layer={layer!r})")
        return GLOBAL_SITES[site]
    if site not in BLOCK_SITES:
        known = ", ".join([*GLOBAL_SITES, *BLOCK_SITES])
        raise ValueError(f"unknown hook site {site!r}; known: {known}")
    return BLOCK_SITES[site].format(layer=_index(layer, "layer"))


def all_hook_names(n_layers: int) -> list[str]:
    """Every hook site of a model with ``n_layers`` blocks, in forward order."""
    names = list(GLOBAL_SITES.values())
    for layer in range(n_layers):
        names += [template.format(layer=layer) for template in BLOCK_SITES.values()]
    return names


# ---------------------------------------------------------------- metric keys

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
LOSS = "loss"
SEQ_ACC = "seq_acc"  # teacher forcing: every supervised position right (the paper's accuracy)
TOKEN_ACC = "token_acc"
GEN_ACC = "gen_acc"  # autoregressive: the generated CoT and EoS all right
LR = "lr"

_METRIC_KEY = re.compile(r"^(?P<split>[a-z_]+)/(?P<name>[a-z0-9_]+)(?:/L(?P<length>\d+))?$")


def metric_key(split: str, name: str, length: int | None = None) -> str:
    """``metric_key("test", "seq_acc") -> "test/seq_acc"``; with ``length=7``: ``"test/seq_acc/L7"``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"metric name must be lowercase letters, digits and '_' (got {name!r})")
    key = f"{split}/{name}"
    return key if length is None else f"{key}/L{_index(length, 'length', least=1)}"


def parse_metric_key(key: str) -> tuple[str, str, int | None]:
    """Inverse of :func:`metric_key`: ``"test/seq_acc/L7" -> ("test", "seq_acc", 7)``."""
    match = _METRIC_KEY.match(key)
    if match is None or match["split"] not in SPLITS:
        raise ValueError(f"not a metric key: {key!r}")
    length = match["length"]
    return match["split"], match["name"], None if length is None else int(length)


# ---------------------------------------------------------------- circuit scores

EOI_LOCATOR, ITERATION = "eoi_locator", "iteration"
ROLES = (EOI_LOCATOR, ITERATION)  # the layer the theory expects: eoi_locator 0, iteration 1
PEAKY_ABS, PEAKY_THRES, INV, MUL = "peaky_abs", "peaky_thres", "inv", "mul"
SCORES = (PEAKY_ABS, PEAKY_THRES, INV, MUL)  # mul: TransformerLens detect_head "mul" score
SCORE_PREFIX = "score"

_SCORE_KEY = re.compile(
    r"^score/(?P<role>[a-z_]+)/(?P<score>[a-z_]+)/L(?P<layer>\d+)H(?P<head>\d+)(?:/len(?P<length>\d+))?$"
)


def score_key(role: str, score: str, layer: int, head: int, length: int | None = None) -> str:
    """``score_key("iteration", "peaky_thres", 1, 0) -> "score/iteration/peaky_thres/L1H0"``;
    with ``length=7`` the key ends in ``/len7``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
    key = f"{SCORE_PREFIX}/{role}/{score}/L{_index(layer, 'layer')}H{_index(head, 'head')}"
    return key if length is None else f"{key}/len{_index(length, 'length', least=1)}"


def parse_score_key(key: str) -> tuple[str, str, int, int, int | None]:
    """Inverse of :func:`score_key`: ``".../L1H0/len7" -> ("iteration", "peaky_thres", 1, 0, 7)``."""
    match = _SCORE_KEY.match(key)
    if match is None or match["role"] not in ROLES or match["score"] not in SCORES:
        raise ValueError(f"not a score key: {key!r}")
    length = match["length"]
    return (
        match["role"],
        match["score"],
        int(match["layer"]),
        int(match["head"]),
        None if length is None else int(length),
    )


# ---------------------------------------------------------------- jobs and queues

JOB_TRAIN, JOB_INTERVENE, JOB_SWEEP = "train", "intervene", "sweep"
JOB_KINDS = (JOB_TRAIN, JOB_INTERVENE, JOB_SWEEP)
QUEUE_CPU, QUEUE_GPU = "cpu", "gpu"
QUEUES = (QUEUE_CPU, QUEUE_GPU)
EXECUTE_JOB_TASK = "circuitboard.execute_job"  # the one Celery task; its only argument is the job id


DEVICE = re.compile(r"cpu|cuda(:\d+)?")  # what --device and a spec's device accept (fullmatch)


def queue_for_device(device: str | None) -> str:
    """The queue a job goes to: ``gpu`` for a ``cuda`` device, else ``cpu``."""
    return QUEUE_GPU if device is not None and device.startswith("cuda") else QUEUE_CPU


def _index(value: object, what: str, *, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{what} must be an integer >= {least} (got {value!r})")
    return value
