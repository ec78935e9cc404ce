"""The population: N single envs stepped together, their training batched where it can be.

``population`` (``Population`` and the ``gymnasium.vector`` entry point), built from the single
env's public phases; ``groups`` (one batched interval of members sharing an architecture and a
batch size); ``batched`` (the stacked arithmetic); ``allocator`` (keeping freed memory).
"""
