"""FinEval: evaluate HF checkpoints on similar, novel, general and instruction-following tasks.

Tasks are declared in YAML (``configs/eval/tasks/*.yaml``; see :mod:`findap_nemo.eval.registry`), answered by a
Hugging Face or vLLM backend, scored per task and per category, and compared across models.

    from findap_nemo.eval import run_eval
    results = run_eval(cfg)  # cfg: EvalConfig, a dict, or a YAML path
"""

from findap_nemo.eval.run import run_eval

__all__ = ["run_eval"]
