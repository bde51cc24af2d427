"""Model-family adapters: which sub-modules of a model are cache units. Data, not code paths."""
