"""GenRM preference pairs (FinDAP): sample step-by-step solutions, judge them, build DPO pairs.

- FAP (final answer preference): P(Yes) of a holistic Yes/No judgement, read from the judge's next-token
  distribution; best vs worst sample per prompt above a margin.
- SCP (stepwise corrective preference): the judge names the first wrong step and rewrites it; the policy continues
  from there; (corrected, original) share the prefix before the error.

Modules: config (schema), prompts (JSONL + templates), steps (step spans, critique parsing), engines (transformers,
vLLM offline, OpenAI-compatible server), pairs (scores and pair rules), run (chunked, resumable run), cli.
"""
