"""Every shipped 8B/70B cluster config passes the stage's validation at its world size, and the planner says its
layout fits on the cluster it is written for.

The cluster configs ask for bf16/FP8 on H100s: on this CPU machine the hardware probes are patched to report an
H100 with Transformer Engine (the validators import them from findap_nemo.runtime at call time). Without the patch
an FP8 config must be refused with a message that says why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from findap_nemo import runtime
from findap_nemo.config import ConfigError, load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.dpo.config import DPOJobConfig
from findap_nemo.plan.config import load_plan_config
from findap_nemo.plan.run import configured_layout, shape_kwargs
from findap_nemo.plan.search import evaluate

REPO = Path(__file__).resolve().parents[1]
TRAIN = sorted((REPO / "configs/train").glob("llama3-*.yaml"))
DPO = sorted((REPO / "configs/dpo").glob("llama3-*-dpo-*.yaml"))


def nodes_of(path: Path) -> int:
    m = re.search(r"-(\d+)node", path.stem)
    assert m, f"{path.name}: cluster configs are named <model>-<stage>-<N>node[-variant].yaml"
    return int(m.group(1))


@pytest.fixture
def h100(monkeypatch):
    for name in ("has_cuda", "is_hopper", "has_transformer_engine"):
        monkeypatch.setattr(runtime, name, lambda: True)


@pytest.fixture
def manifest(tmp_path) -> str:
    p = tmp_path / "manifest.json"
    p.write_text('{"vocab_size": 128256}')
    return str(p)


@pytest.fixture
def dpo_inputs(tmp_path, tiny_tokenizer_dir) -> list[str]:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "q", "chosen_response": "a", "rejected_response": "b"}\n')
    ckpt = tmp_path / "ckpt"
    (ckpt / "iter_0000010").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("10")
    return [f"data.train_file={pairs}", f"model.tokenizer={tiny_tokenizer_dir}", f"checkpoint.pretrained={ckpt}"]


def test_cluster_configs_are_shipped():
    names = {p.stem for p in TRAIN} | {p.stem for p in DPO}
    assert {"llama3-8b-cpt-it-1node", "llama3-8b-cpt-it-2node", "llama3-8b-cpt-it-4node",
            "llama3-70b-cpt-it-8node", "llama3-70b-cpt-it-16node", "llama3-8b-dpo-1node",
            "llama3-70b-dpo-8node"} <= names


@pytest.mark.parametrize("path", TRAIN, ids=lambda p: p.stem)
def test_train_config_validates_at_its_world_size(path, h100, manifest):
    n = nodes_of(path) * 8
    cfg = load_config(TrainJobConfig, path, [f"data.manifest={manifest}"], world_size=n)
    assert cfg.model.num_layers in (32, 80) and cfg.model.vocab_size == 128256
    # the same file at the wrong world size is refused, naming the layout
    bad = n + 1  # not a multiple of TP x PP x CP
    with pytest.raises(ConfigError, match="world size"):
        load_config(TrainJobConfig, path, [f"data.manifest={manifest}"], world_size=bad)


@pytest.mark.parametrize("path", DPO, ids=lambda p: p.stem)
def test_dpo_config_validates_at_its_world_size(path, h100, dpo_inputs):
    cfg = load_config(DPOJobConfig, path, dpo_inputs, world_size=nodes_of(path) * 8)
    assert cfg.schedule.seq_length == 2048 and cfg.optim.lr == 5e-7


@pytest.mark.parametrize("path", TRAIN + DPO, ids=lambda p: p.stem)
def test_planner_says_the_shipped_layout_fits(path):
    cfg = load_plan_config(str(path), [f"cluster.nodes={nodes_of(path)}"])
    assert cfg.sequences_per_sample == (2 if path in DPO else 1)  # a DPO pair is two sequences
    layout, ok = configured_layout(cfg)
    assert ok
    kw = shape_kwargs(cfg)
    kw.pop("cal")
    cand = evaluate(cfg.model, layout, cfg.cluster, **kw)
    assert cand.fits, cand.reasons
    # leave headroom for allocator fragmentation beyond the reserved GiB
    assert cand.memory.total < 0.92 * (cfg.cluster.gpu_memory_gib - cfg.cluster.reserved_gib) * 2 ** 30


def test_fp8_is_refused_without_a_hopper_gpu_and_te(monkeypatch, manifest):
    for name in ("has_cuda", "is_hopper", "has_transformer_engine"):
        monkeypatch.setattr(runtime, name, lambda: False)
    path = REPO / "configs/train/llama3-8b-cpt-it-1node-fp8.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(TrainJobConfig, path, [f"data.manifest={manifest}"], world_size=8)
    text = str(err.value)
    assert "precision.fp8='hybrid'" in text and "Hopper" in text and "Transformer Engine" in text


def test_model_presets_have_the_published_shapes():
    for preset, shape in {"llama3-8b": (32, 4096, 14336, 32, 8), "llama3-70b": (80, 8192, 28672, 64, 8),
                          "llama3.1-8b": (32, 4096, 14336, 32, 8), "llama3.1-70b": (80, 8192, 28672, 64, 8)}.items():
        m = load_config(TrainJobConfig, None, [f"model.preset={preset}", "data.mock=true",
                                               "schedule.seq_length=64"]).model
        assert (m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups) == shape
        assert m.vocab_size == 128256 and m.rotary_base == 500000.0 and m.untie_embeddings_and_output_weights
        assert m.rope_scaling == preset.startswith("llama3.1")
        assert m.max_position_embeddings == (131072 if m.rope_scaling else 8192)


def test_suggested_overrides_make_a_valid_training_config(h100, manifest):
    """What the planner prints as "Best layout as overrides" is accepted by `findap-nemo train` at that world size."""
    from findap_nemo.plan.search import plan

    path = REPO / "configs/train/llama3-70b-cpt-it-16node.yaml"
    cfg = load_plan_config(str(path), ["cluster.nodes=16"])
    best = [c for c in plan(cfg.model, cfg.cluster, cfg.search, seq_length=cfg.schedule.seq_length,
                            global_batch_size=cfg.schedule.global_batch_size) if c.fits][:5]
    assert best
    for cand in best:
        train = load_config(TrainJobConfig, path, [f"data.manifest={manifest}", *cand.layout.overrides()],
                            world_size=128)
        assert train.parallel.tensor_model_parallel_size == cand.layout.tp
        assert train.parallel.context_parallel_size == cand.layout.cp


SLURM = sorted(p for p in (REPO / "configs/slurm").glob("llama3-*.yaml"))


def test_every_cluster_config_has_a_slurm_companion():
    assert {p.stem for p in SLURM} == {p.stem for p in TRAIN + DPO}


@pytest.mark.parametrize("path", SLURM, ids=lambda p: p.stem)
def test_slurm_companion_matches_its_config(path):
    """Resources = the node count the layout was planned for; the SLURM validator re-checks TP x PP x CP and the
    batch divisibility against nodes x tasks."""
    from findap_nemo.slurm.config import SlurmConfig

    cfg = load_config(SlurmConfig, path, ["cluster.check_live=false"])
    assert cfg.resources.nodes == nodes_of(path) and cfg.resources.gpus_per_node == 8
    stage_cfg = Path(cfg.job.config)
    assert stage_cfg.stem == path.stem and (REPO / stage_cfg).is_file()
    assert cfg.job.stage == ("dpo" if "-dpo-" in path.stem else "train")
    assert cfg.resume.enabled and cfg.resume.signal_seconds >= 900
    # a wrong node count is caught before submission
    with pytest.raises(ConfigError, match="TP x PP x CP|divisible"):
        load_config(SlurmConfig, path, ["cluster.check_live=false", "resources.nodes=3"])
