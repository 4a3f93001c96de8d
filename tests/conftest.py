"""Shared fixtures: a locally trained tokenizer and a random tiny HF Llama (no model hub needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_CORPUS = [
    "The company reported quarterly revenue of $4.2 billion, up 12% year over year, beating estimates.",
    "Net income fell to $310 million as interest expense rose; EBITDA margin was 18.5%.",
    "Step 1: Compute the ratio of current assets to current liabilities. Step 2: Compare it to 1.0.",
    "The Federal Reserve held rates steady and signalled two cuts later in the year.",
    "Answer: A. The bond's duration measures price sensitivity to yield changes.",
    "Is the final answer correct? Yes. No. The first incorrect step is Step 2.",
    "Classify the sentiment of the headline as positive, negative or neutral.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from findap_nemo.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(_CORPUS * 20, out, vocab_size=512)
    return out


@pytest.fixture(scope="session")
def tiny_hf_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from findap_nemo.model.hf_tiny import save_random_model

    return save_random_model(tmp_path_factory.mktemp("hf_tiny"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def dist1():
    """A 1-process gloo group with megatron's parallel state (megatron's dataset builders call torch.distributed)."""
    from findap_nemo.config.schema import ParallelConfig
    from findap_nemo.parallel import init_distributed

    init_distributed(ParallelConfig(), seed=0)
    yield

