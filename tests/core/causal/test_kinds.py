"""The intervention kinds' table: the spec, the job and the labels all read it."""

import pytest

from core import names
from core.causal.kinds import HEAD_PREFIXES, KINDS
from core.causal.specs import InterventionSpec, intervention_label
from core.specs.errors import SpecError


def test_the_table_holds_every_kind_once_in_order():
    assert tuple(KINDS) == names.INTERVENTION_KINDS
    assert all(kind.name == name for name, kind in KINDS.items())


@pytest.mark.parametrize("name", names.INTERVENTION_KINDS)
def test_each_kind_either_acts_on_heads_or_measures(name):
    kind = KINDS[name]
    assert set(kind.defaults) <= set(kind.variants) and kind.defaults
    if kind.on_heads:
        assert kind.measure is None and kind.target is None
    else:
        assert kind.measure is not None and kind.target is not None and not kind.by_role


@pytest.mark.parametrize("name", names.INTERVENTION_KINDS)
def test_the_spec_accepts_exactly_the_tables_variants(name):
    extra = {"layer": 1} if name == names.PROBE else {}
    extra |= {"source_run": 1} if name == names.PATTERN else {}
    for variant in KINDS[name].variants:
        assert InterventionSpec.parse({"kind": name, "variants": [variant], **extra}).chosen_variants == (variant,)
    assert InterventionSpec.parse({"kind": name, **extra}).chosen_variants == KINDS[name].defaults
    with pytest.raises(SpecError, match=f"not an? {name} variant"):
        InterventionSpec.parse({"kind": name, "variants": ["scramble"], **extra})


def test_labels_begin_with_their_kinds_prefix():
    spec = InterventionSpec.parse({"kind": "pattern", "variants": ["shift", "run"], "source_run": 3, "shift": -2})
    assert [intervention_label(spec, v) for v in ("ideal", "shift", "run")] == \
        ["pattern/ideal", "pattern/shift-2", "pattern/run3@last"]
    edge = InterventionSpec.parse({"kind": "edge"})
    assert intervention_label(edge, "raw", "eoi_locator") == "edge/eoi/raw"
    assert intervention_label(edge, "renorm") == "edge/circuit/renorm"
    patch = InterventionSpec.parse({"kind": "activation_patch", "metric": "logit_diff"})
    assert intervention_label(patch, "mlp_out") == "patch/mlp_out/logit_diff"
    assert KINDS["activation_patch"].target(patch, 16) == "len16"
    probe = InterventionSpec.parse({"kind": "probe", "layer": 1, "site": "mlp_post"})
    assert (intervention_label(probe, "x_t"), KINDS["probe"].target(probe, 16)) == ("probe/x_t", "blocks.1.mlp.hook_post")
    assert HEAD_PREFIXES == ("ablate", "edge", "pattern")
