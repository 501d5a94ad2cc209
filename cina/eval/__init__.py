"""The scoreboard: baseline estimators, benchmark loaders and `evaluate`, which runs every
estimator on every dataset of a suite. A user of the estimator, not part of it: this room imports
`cina.core` and causalgen's public names, and nothing imports it but the CLI.

`baselines` needs scikit-learn (the ``baselines`` extra); importing this package does not.
"""
