"""circuitboard's shared library: settings, names, specs, problems, database and (torch only) ml."""
