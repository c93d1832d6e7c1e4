"""The job contract, one concept a module.

    core.specs.errors     SpecError: one ``FIELD: message (got VALUE)`` line per problem
    core.specs.run        ProblemSpec, ModelSpec, TrainSpec, RunSpec and the flat keys
    core.specs.overrides  ``--set`` parsing (parse_set) and apply_overrides
    core.specs.sweep      SweepSpec: a base crossed with up to two numeric axes and seeds
    core.specs.budget     estimate_budget: parameters, FLOPs, memory and time before a run is queued

Import from the module that defines a name; this package re-exports nothing, so that importing one
module (e.g. ``core.presets`` importing ``core.specs.run``) never drags in the others.
"""
