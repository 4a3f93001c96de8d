"""The CPU shims reach the CUDA calls of the installed megatron-core (in a subprocess: the shims patch modules)."""

from __future__ import annotations

import subprocess
import sys

import torch

from tests.helpers import REPO, env

PROBE = """
import torch
from findap_nemo.cpu_shims import apply_cpu_shims
assert apply_cpu_shims()
from megatron.core.distributed import param_and_grad_buffer as buf
from megatron.core.tensor_parallel import random
stream = buf.torch.cuda.current_stream()       # megatron-core 0.19 start_grad_sync, before any collective
stream.wait_stream(buf.torch.cuda.current_stream())
stream.record_event()
assert buf.torch.cuda.current_device() == torch.device("cpu")
assert buf.torch.zeros(2, device="cuda").device.type == "cpu"
random._set_cuda_rng_state(random._get_cuda_rng_state())
try:
    torch.cuda.current_stream()                 # outside megatron nothing changed: the real error
except (AssertionError, RuntimeError) as err:
    print("real torch.cuda untouched:", type(err).__name__)
"""


def test_megatron_cuda_calls_run_on_cpu_and_nothing_else_changes():
    if torch.cuda.is_available():  # the shims are a no-op on a GPU; the GPU path is the real one
        return
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "real torch.cuda untouched" in proc.stdout
