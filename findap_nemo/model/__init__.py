"""Llama-architecture models: megatron-core GPTModel builder and small HF models for tests and demos."""
