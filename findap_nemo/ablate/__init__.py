"""`findap-nemo ablate`: the paper's recipe comparisons as one job (variants of a pipeline, shared stages once)."""
