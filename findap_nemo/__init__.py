"""findap-nemo: domain-adaptive post-training (FinDAP recipe) on megatron-core."""

__version__ = "0.1.0"
