"""The single environment, ``BatchSizeEnv``, and its parts.

``batch_size`` (the env and its step phases), ``config`` (``EnvConfig``, the one shape of its
arguments), ``actions`` (the batch-size ladder and its encodings), ``observation`` (the
observation vector), ``rewards``, ``divergence``, ``render``, and ``branching`` (an independent
copy of an episode mid-way, for references such as ``oracle-greedy``).
"""
