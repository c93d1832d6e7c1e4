"""Every string that crosses a boundary: hook sites, module names, metric and score keys, circuit
roles, job, checkpoint and intervention kinds.

The model, the recorder, the database, the web pages and the queue meet only through these strings,
so each is spelled once, here; every key is built by one function and parsed back by its inverse
(``score_key`` / ``parse_score_key``, ``metric_key`` / ``parse_metric_key``), so no caller splits or
matches a key by hand. Hook sites and modules follow TransformerLens (``blocks.1.attn.hook_pattern``);
layers and heads count from 0, as in the model's module tree.

Metric keys are ``SPLIT/NAME`` or ``SPLIT/NAME/L{length}``:  ``test/seq_acc``, ``test/seq_acc/L7``.
Score keys are ``score/ROLE/SCORE/L{layer}H{head}`` with an optional ``/len{length}``:
``score/iteration/peaky_thres/L1H0``, ``score/iteration/peaky_thres/L1H0/len7``.
Both live in the same metrics table, keyed by (run, key, step). A head is labelled ``L{layer}H{head}``
(``head_label``), in score keys, summaries and intervention targets alike.
"""

import re
from typing import NamedTuple

# ---------------------------------------------------------------- problems (core.problems implements them)

POLYNOMIAL, PARITY, BINARY_COPY = "polynomial", "parity", "binary_copy"
PROBLEM_NAMES = (POLYNOMIAL, PARITY, BINARY_COPY)
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
SEQ_ACC_ALL = "seq_acc_all"  # the mean over every trained length (SEQ_ACC averages L = 4..max_len)
SEQ_ACC_HELDOUT = "seq_acc_heldout"  # the mean over the test lengths beyond max_len
GEN_ACC = "gen_acc"  # autoregressive: the generated CoT and EoS all right
GEN_ANSWER_ACC = "gen_answer_acc"  # autoregressive: the final state y_L right
LR = "lr"


class MetricKey(NamedTuple):
    split: str
    name: str
    length: int | None


_METRIC_KEY = re.compile(r"^(?P<split>[a-z_]+)/(?P<name>[a-z0-9_]+)(?:/L(?P<length>\d+))?$")


def metric_key(split: str, name: str, length: int | None = None) -> str:
    """``metric_key("test", "seq_acc") -> "test/seq_acc"``; with ``length=7``: ``"test/seq_acc/L7"``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"metric name must be lowercase letters, digits and '_' (got {name!r})")
    key = f"{split}/{name}"
    return key if length is None else f"{key}/L{_index(length, 'length', least=1)}"


def parse_metric_key(key: str) -> MetricKey:
    """Inverse of :func:`metric_key`: ``"test/seq_acc/L7" -> MetricKey("test", "seq_acc", 7)``."""
    found = try_parse_metric_key(key)
    if found is None:
        raise ValueError(f"not a metric key: {key!r}")
    return found


def try_parse_metric_key(key: str) -> MetricKey | None:
    """:func:`parse_metric_key`, or None for any other key (a score key, say): for filtering rows."""
    match = _METRIC_KEY.match(key)
    if match is None or match["split"] not in SPLITS:
        return None
    length = match["length"]
    return MetricKey(match["split"], match["name"], None if length is None else int(length))


# ---------------------------------------------------------------- circuit roles and heads

EOI_LOCATOR, ITERATION = "eoi_locator", "iteration"
ROLES = (EOI_LOCATOR, ITERATION)
EXPECTED_LAYER = {EOI_LOCATOR: 0, ITERATION: 1}  # the layer the theory puts each role in
ROLE_TITLES = {EOI_LOCATOR: "EoI locator", ITERATION: "iteration head"}  # what a person reads
ROLE_SHORT = {EOI_LOCATOR: "eoi", ITERATION: "iteration"}  # in intervention labels: edge/eoi/renorm

_HEAD_LABEL = re.compile(r"^L(?P<layer>\d+)H(?P<head>\d+)$")


def role_of_layer(layer: int) -> str:
    """The role the theory gives a head of ``layer``: layer 0 the EoI locator, deeper layers the iteration head."""
    return EOI_LOCATOR if _index(layer, "layer") == 0 else ITERATION


def head_label(layer: int, head: int) -> str:
    """``head_label(1, 0) -> "L1H0"``."""
    return f"L{_index(layer, 'layer')}H{_index(head, 'head')}"


def every_head_label(layer: int) -> str:
    """``every_head_label(0) -> "L0H*"``: every head of a layer, as an intervention target."""
    return f"L{_index(layer, 'layer')}H*"


def parse_head_label(label: str) -> tuple[int, int]:
    """Inverse of :func:`head_label`: ``"L1H0" -> (1, 0)``."""
    match = _HEAD_LABEL.match(label) if isinstance(label, str) else None
    if match is None:
        raise ValueError(f"not a head label: {label!r} (expected L{{layer}}H{{head}}, e.g. L1H0)")
    return int(match["layer"]), int(match["head"])


# ---------------------------------------------------------------- circuit scores

PEAKY_ABS, PEAKY_THRES, INV, MUL = "peaky_abs", "peaky_thres", "inv", "mul"
SCORES = (PEAKY_ABS, PEAKY_THRES, INV, MUL)  # mul: TransformerLens detect_head "mul" score
HEADLINE_SCORE = PEAKY_THRES  # the score that ranks heads, names the circuit and is shown first
SCORE_PATTERN = f"^({'|'.join(SCORES)})$"  # a query parameter naming a score (FastAPI ``Query(pattern=...)``)
SCORE_PREFIX = "score"


class ScoreKey(NamedTuple):
    role: str
    score: str
    layer: int
    head: int
    length: int | None  # None: averaged over the probe set's lengths L = 4..max_len

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)


_SCORE_KEY = re.compile(
    rf"^{SCORE_PREFIX}/(?P<role>[a-z_]+)/(?P<score>[a-z_]+)/L(?P<layer>\d+)H(?P<head>\d+)(?:/len(?P<length>\d+))?$"
)


def score_key(role: str, score: str, layer: int, head: int, length: int | None = None) -> str:
    """``score_key("iteration", "peaky_thres", 1, 0) -> "score/iteration/peaky_thres/L1H0"``;
    with ``length=7`` the key ends in ``/len7``."""
    key = f"{score_prefix(role, score)}{head_label(layer, head)}"
    return key if length is None else f"{key}/len{_index(length, 'length', least=1)}"


def score_prefix(role: str | None = None, score: str | None = None) -> str:
    """What every score key (of ``role``, of its ``score``) starts with, for prefix queries:
    ``"score/"``, ``"score/iteration/"``, ``"score/iteration/peaky_thres/"``."""
    if score is not None and role is None:
        raise ValueError("a score prefix with a score needs its role")
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if score is not None and score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
    return "/".join([SCORE_PREFIX, *(part for part in (role, score) if part is not None), ""])


def head_score_keys(role: str, score: str, n_layers: int, n_heads: int) -> list[str]:
    """The probe-set-averaged ``score`` keys of every head, in (layer, head) order."""
    return [score_key(role, score, layer, head) for layer in range(n_layers) for head in range(n_heads)]


def parse_score_key(key: str) -> ScoreKey:
    """Inverse of :func:`score_key`: ``".../L1H0/len7" -> ScoreKey("iteration", "peaky_thres", 1, 0, 7)``."""
    found = try_parse_score_key(key)
    if found is None:
        raise ValueError(f"not a score key: {key!r}")
    return found


def try_parse_score_key(key: str) -> ScoreKey | None:
    """:func:`parse_score_key`, or None for any other key (a metric key, say): for filtering rows."""
    match = _SCORE_KEY.match(key)
    if match is None or match["role"] not in ROLES or match["score"] not in SCORES:
        return None
    length = match["length"]
    return ScoreKey(match["role"], match["score"], int(match["layer"]), int(match["head"]),
                    None if length is None else int(length))


# ---------------------------------------------------------------- checkpoints

CHECKPOINT_RESUME = "resume"  # model, optimizer, step and random states: resume bit for bit
CHECKPOINT_WEIGHTS = "weights"  # the model alone, at every snapshot step: what interventions load
CHECKPOINT_KINDS = (CHECKPOINT_RESUME, CHECKPOINT_WEIGHTS)


# ---------------------------------------------------------------- interventions (core.causal.kinds runs them)

ABLATE, EDGE, PATTERN, ACTIVATION_PATCH, PROBE = "ablate", "edge", "pattern", "activation_patch", "probe"
INTERVENTION_KINDS = (ABLATE, EDGE, PATTERN, ACTIVATION_PATCH, PROBE)
ABLATIONS = ("zero", "mean", "resample")  # ablate's variants: what replaces a head's output
EDGE_VARIANTS = ("renorm", "raw")  # edge's: the pattern row rescaled to sum to 1, or left short
PATTERN_VARIANTS = ("ideal", "shift", "run")  # pattern's: the theory's map, shifted, another run's
PATCH_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")  # activation_patch's (BLOCK_SITES)
PATCH_METRICS = ("accuracy", "logit_diff")  # what activation patching measures
PROBE_SITES = (*PATCH_SITES, "mlp_post")  # where a probe reads
PROBE_TARGETS = ("eoi_position", "length", "t", "y_prev", "x_t")  # probe's variants: what it predicts


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
