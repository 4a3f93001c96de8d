"""CPU mode for megatron-core: the few CUDA-assuming call sites, made to work on a CUDA-less torch (gloo).

Applied once by :func:`findap_nemo.parallel.init_distributed` and ONLY when ``torch.cuda.is_available()`` is False;
on a GPU nothing here runs. Every shim names the error it fixes. No other module in the project patches megatron.

The mechanism for hard-coded devices is module-scoped: each listed megatron module gets a ``torch`` stand-in whose
``torch.cuda`` maps device queries/RNG/synchronise to their CPU equivalents and whose tensor factories turn
``device='cuda'`` into CPU. Nothing changes for any other module (transformers, the user's code, torch itself).

Versions: every shim here is needed on all tested megatron-core releases (0.16.1 through 0.19.x) unless its
docstring names a narrower range. The CUDA build of torch without a GPU fails differently from the CPU build
("Found no NVIDIA driver" instead of "Torch not compiled with CUDA enabled"); the shims cover both. Not a shim:
megatron-core 0.18+ imports ``triton`` at module level, which scripts/setup.sh installs beside a CPU torch.
"""

from __future__ import annotations

import importlib
import sys
import types

import torch

_APPLIED = False

# megatron modules whose code hard-codes CUDA devices / torch.cuda calls on the training path.
# Errors fixed: "Torch not compiled with CUDA enabled" (AssertionError) raised from
#   - param/grad buffers, DDP, TP mappings/layers and pipeline p2p using torch.cuda.current_device() as a device,
#   - FP32Optimizer/MixedPrecisionOptimizer scale tensors, clip_grads and schedules' total_num_tokens created with
#     device='cuda',
#   - torch.cuda.synchronize() in p2p communication and checkpoint loading,
#   - the RNG tracker's torch.cuda.get_rng_state/manual_seed (model_parallel_cuda_manual_seed).
_DEVICE_MODULES = [
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.distributed.distributed_data_parallel",
    "megatron.core.distributed.finalize_model_grads",
    "megatron.core.tensor_parallel.mappings",
    "megatron.core.tensor_parallel.layers",
    "megatron.core.tensor_parallel.cross_entropy",
    "megatron.core.tensor_parallel.random",
    "megatron.core.tensor_parallel.utils",
    "megatron.core.tensor_parallel.data",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.pipeline_parallel.p2p_communication",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.transformer.module",
    "megatron.core.transformer.transformer_block",
    "megatron.core.transformer.transformer_layer",
    "megatron.core.transformer.attention",
    "megatron.core.transformer.dot_product_attention",
    "megatron.core.models.gpt.gpt_model",
    "megatron.core.models.common.language_module.language_module",
    "megatron.core.models.common.embeddings.rotary_pos_embedding",
    "megatron.core.dist_checkpointing.strategies.torch",
    "megatron.core.dist_checkpointing.strategies.filesystem_async",
    "megatron.core.dist_checkpointing.strategies.async_utils",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.dist_checkpointing.strategies.fully_parallel",
    "megatron.core.dist_checkpointing.tensor_aware_state_dict",
    "megatron.core.dist_checkpointing.exchange_utils",
    "megatron.core.utils",
    "megatron.core.transformer.utils",
    "megatron.core.fusions.fused_softmax",
    "megatron.core.rerun_state_machine",
    "megatron.core.optimizer_param_scheduler",
]


def _cpu_device(device):
    if device is None:
        return None
    if isinstance(device, int):
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return torch.device("cpu")
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


class _CpuCuda(types.SimpleNamespace):
    """Stand-in for ``torch.cuda`` inside the listed megatron modules."""

    def __getattr__(self, name):  # anything not overridden behaves as the real torch.cuda
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device():
        return torch.device("cpu")

    @staticmethod
    def synchronize(*_a, **_k):
        return None

    @staticmethod
    def current_stream(*_a, **_k):
        """megatron-core 0.19 (not 0.16.1): ``_ParamAndGradBucketGroup.start_grad_sync`` takes ``torch.cuda.current_stream()``
        unconditionally (to wait on CUDA-graph replay events) -> "Torch not compiled with CUDA enabled" on a CPU
        build, "Found no NVIDIA driver" on a CUDA build without a GPU. torch's CPU stream has the same no-op
        ``wait_event``/``wait_stream``/``record_event``."""
        return torch.cpu.current_stream()

    @staticmethod
    def default_stream(*_a, **_k):
        return torch.cpu.current_stream()

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def get_rng_state(*_a, **_k):
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state, *_a, **_k):
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed):
        torch.manual_seed(seed)

    @staticmethod
    def memory_allocated(*_a, **_k):
        return 0

    @staticmethod
    def max_memory_allocated(*_a, **_k):
        return 0

    @staticmethod
    def empty_cache():
        return None

    @staticmethod
    def device_count():
        return 0

    class nvtx:  # noqa: N801 - mirrors torch.cuda.nvtx
        @staticmethod
        def range_push(*_a, **_k):
            return None

        @staticmethod
        def range_pop(*_a, **_k):
            return None


def _factory(fn):
    def wrapped(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return fn(*args, **kwargs)

    wrapped.__wrapped__ = fn
    return wrapped


class _CpuTorch(types.ModuleType):
    """Stand-in for the ``torch`` module inside the listed megatron modules (see module docstring)."""

    def __init__(self):
        super().__init__("torch")
        self.cuda = _CpuCuda()
        for name in ("zeros", "ones", "empty", "full", "tensor", "arange", "rand", "randn", "randint",
                     "zeros_like", "ones_like", "empty_like", "as_tensor"):
            setattr(self, name, _factory(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


def _tensor_type_as_cuda():
    """megatron asserts on CUDA type strings: clip_grads ``param.grad.type() == 'torch.cuda.FloatTensor'`` and the
    DistributedOptimizer's "TypeError: Wrapped parameters must be one of torch.cuda.FloatTensor, ...".

    ``Tensor.type()`` (no arguments) answers the CUDA name for CPU tensors when, and only when, the caller is
    megatron-core code; every other caller sees the real answer.
    """
    original = torch.Tensor.type
    if getattr(original, "_findap_cpu_shim", False):
        return

    def type_(self, *args, **kwargs):
        name = original(self, *args, **kwargs)
        if not args and not kwargs and isinstance(name, str) and name.startswith("torch.") and \
                not name.startswith("torch.cuda."):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("megatron.core"):
                return "torch.cuda." + name[len("torch."):]
        return name

    type_._findap_cpu_shim = True
    torch.Tensor.type = type_


def _rng_state_setter():
    """``tensor_parallel.random._get/_set_cuda_rng_state`` reach into ``torch.cuda.default_generators``
    ("Torch not compiled with CUDA enabled"); on CPU the tracker forks the CPU generator instead, so dropout in
    TP regions still gets per-rank streams."""
    random = importlib.import_module("megatron.core.tensor_parallel.random")

    def _set_cpu_rng_state(new_state, device=-1, graph_safe=False):  # noqa: ARG001 - megatron's signature
        torch.set_rng_state(new_state)

    def _get_cpu_rng_state(device=None, clone=False, graph_safe=False):  # noqa: ARG001 - megatron's signature
        return torch.get_rng_state()

    random._set_cuda_rng_state = _set_cpu_rng_state
    random._get_cuda_rng_state = _get_cpu_rng_state


def _own_step_per_param():
    """Three problems of megatron's distributed optimizer with plain torch Adam (apex/TE FusedAdam keep no per-param
    'step') and fp32 main params, i.e. on the CPU path.

    With torch.optim.Adam (no apex/TE fused Adam), ``DistributedOptimizer.load_state_dict`` assigns ONE shared
    ``step`` tensor to every param's state; Adam then increments it once per param per step, so after a resume the
    step count races ahead and the bias correction (hence the first update) differs from an uninterrupted run.
    Giving every param its own copy makes resume bit-exact. Only plain torch Adam hits this, i.e. the CPU path."""
    from megatron.core.optimizer import distrib_optimizer

    cls = distrib_optimizer.DistributedOptimizer
    if getattr(cls.load_state_dict, "_findap_cpu_shim", False):
        return
    original = cls.load_state_dict

    def load_state_dict(self, state_dict):
        result = original(self, state_dict)
        for state in self.optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].detach().clone()
        return result

    load_state_dict._findap_cpu_shim = True
    cls.load_state_dict = load_state_dict

    # The torch-Adam-only 'step' is restored from param_groups before the param state is set, and the param-state
    # formats get it wrong: 'fully_reshardable' hands over no 'step' (KeyError: 'step' while copying every key of
    # the live state), 'dp_reshardable' hands over the pre-load step object (0 for a fresh optimizer), which would
    # reset Adam's bias correction on resume. Keep the live, just-restored step in both cases.
    # Loading 'dp_reshardable' state copies into the main params, which in fp32 training (no fp16/bf16 wrapper,
    # i.e. on CPU) are views of the model's leaf parameters: "a view of a leaf Variable that requires grad is being
    # used in an in-place operation". The copy is a load, not a computation: it runs without autograd.
    set_states = cls._set_main_param_and_optimizer_states

    def _set_main_param_and_optimizer_states(self, model_param, tensors):
        current = self._get_main_param_and_optimizer_states(model_param)
        if "step" in current:
            tensors = {**tensors, "step": current["step"]}
        with torch.no_grad():
            return set_states(self, model_param, tensors)

    cls._set_main_param_and_optimizer_states = _set_main_param_and_optimizer_states


def _gather_optimizer_state_over_gloo():
    """The 'fully_reshardable' optimizer checkpoint gathers state with ``use_gloo_comm=False``, i.e.
    ``send_tensor.cuda()`` ("Torch not compiled with CUDA enabled"). On CPU the gather runs on the gloo path, which
    megatron already implements."""
    from megatron.core.optimizer import distrib_optimizer

    cls = distrib_optimizer.DistributedOptimizer
    original = cls.get_parameter_state_dp_zero
    if getattr(original, "_findap_cpu_shim", False):
        return

    def get_parameter_state_dp_zero(self, use_gloo_comm=True, *args, **kwargs):  # noqa: ARG001
        return original(self, True, *args, **kwargs)

    get_parameter_state_dp_zero._findap_cpu_shim = True
    cls.get_parameter_state_dp_zero = get_parameter_state_dp_zero


def _tied_embeddings_across_pipeline():
    """With tied embeddings and PP > 1, ``LanguageModule.setup_embeddings_and_output_layer`` moves the last stage's
    copy of the embedding with ``weight.data.cuda()`` before all-reducing it with the first stage ("Torch not
    compiled with CUDA enabled"). On CPU the tensor stays where it is for the duration of that call."""
    from megatron.core.models.common.language_module.language_module import LanguageModule

    original = LanguageModule.setup_embeddings_and_output_layer
    if getattr(original, "_findap_cpu_shim", False):
        return

    def setup_embeddings_and_output_layer(self):
        real_cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda t, *a, **k: t
        try:
            return original(self)
        finally:
            torch.Tensor.cuda = real_cuda

    setup_embeddings_and_output_layer._findap_cpu_shim = True
    LanguageModule.setup_embeddings_and_output_layer = setup_embeddings_and_output_layer


def cpu_transformer_config() -> dict:
    """TransformerConfig values the CPU (gloo) path needs; merged by the model builder when CUDA is absent.

    ``batch_p2p_comm=False``: megatron batches pipeline send/recv with ``batch_isend_irecv``, which gloo runs as
    unordered individual ops; in the interleaved (virtual pipeline) schedule, once backward passes overlap with
    forward passes, activations arrive in the wrong buffers and later micro-batches silently compute different
    losses (1e-4 off a PP1 run on the same weights). Unbatched p2p is exact.
    """
    return {"batch_p2p_comm": False}


def apply_cpu_shims() -> bool:
    """Patch megatron-core for a CUDA-less torch. Returns True when applied (no-op on GPU machines)."""
    global _APPLIED
    if _APPLIED or torch.cuda.is_available():
        return _APPLIED
    proxy = _CpuTorch()
    for name in _DEVICE_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # module moved in another megatron-core version: nothing to patch there
            continue
        if getattr(mod, "torch", None) is torch:
            mod.torch = proxy
    _tensor_type_as_cuda()
    _rng_state_setter()
    _own_step_per_param()
    _gather_optimizer_state_over_gloo()
    _tied_embeddings_across_pipeline()
    _APPLIED = True
    return True
