"""Checkpoint conversion between Hugging Face (safetensors) and megatron-core dist checkpoints (torch_dist).

Both directions stream tensor by tensor, so peak memory stays near one layer's largest tensor rather than the model:

* :mod:`.hf_config`       HF ``config.json`` (Llama 3.x, Mistral, Qwen2) <-> :class:`ModelConfig`
* :mod:`.layout`          the tensor layout mapping (fused QKV with GQA interleaving, fused gate/up, vocab padding)
* :mod:`.safetensors_io`  streaming reader/writer for sharded safetensors with the index JSON
* :mod:`.mcore_io`        streaming writer/reader for megatron's torch_dist format (torch.distributed.checkpoint)
* :mod:`.hf_to_mcore`, :mod:`.mcore_to_hf`  the two conversions; :mod:`.cli` the ``findap-nemo convert`` stage
"""
