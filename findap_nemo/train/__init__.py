"""Training on megatron-core: checkpointing, the generic trainer, and the joint CPT+IT stage."""
