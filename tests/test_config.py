"""Config loading and up-front validation: every error names the key, the value and a fix."""

from __future__ import annotations

import argparse
import pytest

from findap_nemo import runtime
from findap_nemo.config import ConfigError, load_config
from findap_nemo.train.config import TrainJobConfig
from helpers import cli

TINY = "configs/train/tiny_cpu.yaml"


def load(*overrides, world_size=None):
    return load_config(TrainJobConfig, TINY, overrides, world_size=world_size)


def errors(*overrides, world_size=None) -> str:
    with pytest.raises(ConfigError) as exc:
        load(*overrides, world_size=world_size)
    return str(exc.value)


def test_preset_and_overrides_merge():
    cfg = load("schedule.train_iters=7", "optim.lr=1e-4", "optim.min_lr=1e-5", "model.num_layers=8")
    assert cfg.schedule.train_iters == 7 and cfg.optim.lr == 1e-4
    assert cfg.model.num_layers == 8 and cfg.model.hidden_size == 64  # rest from the tiny preset
    assert cfg.model.rotary_base == 500000.0 and cfg.model.untie_embeddings_and_output_weights


def test_llama3_presets_have_the_real_shapes():
    cfg = load_config(TrainJobConfig, None, ["model.preset=llama3-8b", "data.mock=true"])
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups,
            m.vocab_size) == (32, 4096, 14336, 32, 8, 128256)
    cfg = load_config(TrainJobConfig, None, ["model.preset=llama3-70b", "data.mock=true"])
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups) == \
        (80, 8192, 28672, 64, 8)


@pytest.mark.parametrize("overrides,world,needle", [
    (["parallel.tensor_model_parallel_size=3"], 3, "model.num_attention_heads=4: must be divisible by parallel.tensor_model_parallel_size=3"),
    (["parallel.tensor_model_parallel_size=4"], 4, "model.num_query_groups=2: query groups (KV heads) must be divisible"),
    (["parallel.pipeline_model_parallel_size=3"], 3, "model.num_layers=4: must be divisible by pipeline_model_parallel_size=3"),
    (["parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=4"], 2,
     "must be divisible by pipeline_model_parallel_size x virtual_pipeline_model_parallel_size"),
    (["parallel.virtual_pipeline_model_parallel_size=2"], 1, "virtual pipeline stages need pipeline_model_parallel_size > 1"),
    (["schedule.global_batch_size=6", "schedule.micro_batch_size=4"], 1, "schedule.global_batch_size=6: must be divisible by micro_batch_size x data-parallel size"),
    (["schedule.global_batch_size=6", "schedule.micro_batch_size=2"], 4, "must be divisible by micro_batch_size x data-parallel size = 2 x 4 = 8"),
    (["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true", "schedule.seq_length=63"], 2,
     "schedule.seq_length=63: with sequence_parallel the sequence length must be divisible by TP=2"),
    (["parallel.sequence_parallel=true"], 1, "sequence parallelism needs tensor_model_parallel_size > 1"),
    (["parallel.tensor_model_parallel_size=2"], 3, "the world size 3 must be a multiple of TP x PP x CP = 2"),
    (["precision.fp8=hybrid"], 1, "FP8 needs a Hopper (H100/H200) or newer GPU"),
    (["precision.fp8=hybrid"], 1, "FP8 needs Transformer Engine"),
    (["precision.params_dtype=bf16"], 1, "half precision training needs a GPU"),
    (["schedule.seq_length=9000"], 1, "exceeds model.max_position_embeddings=4096"),
    (["data.mock=false"], 1, "data.manifest=None: give the data stage's manifest.json"),
    (["data.mock=false", "data.manifest=/nonexistent/manifest.json"], 1, "file not found"),
    (["optim.lr_decay_style=step"], 1, "use cosine, linear or constant"),
    (["optim.lr=1e-5", "optim.min_lr=1e-4"], 1, "must be in [0, optim.lr=1e-05]: the schedule decays from lr to min_lr"),
    (["model.recompute_granularity=full"], 1, "full recompute needs recompute_method uniform or block"),
])
def test_validation_errors(overrides, world, needle):
    assert needle in errors(*overrides, world_size=world)


def test_all_problems_reported_at_once():
    msg = errors("parallel.tensor_model_parallel_size=3", "parallel.pipeline_model_parallel_size=3", world_size=9)
    assert "num_attention_heads" in msg and "num_layers" in msg


def test_fp8_accepted_on_hopper_with_te(monkeypatch):
    from findap_nemo.config import schema  # noqa: F401 - validate imports runtime lazily

    monkeypatch.setattr(runtime, "has_cuda", lambda: True)
    monkeypatch.setattr(runtime, "is_hopper", lambda: True)
    monkeypatch.setattr(runtime, "has_transformer_engine", lambda: True)
    cfg = load("precision.fp8=hybrid", "precision.fp8_recipe=tensorwise", "precision.params_dtype=bf16")
    assert cfg.precision.fp8 == "hybrid"
    assert "fp8_recipe" in errors("precision.fp8=hybrid", "precision.fp8_recipe=nope", "precision.params_dtype=bf16")
    assert "model.transformer_impl" in errors("precision.fp8=hybrid", "model.transformer_impl=local",
                                              "precision.params_dtype=bf16")


def test_unknown_key_and_bad_type_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="schedule.trian_iters"):
        load("schedule.trian_iters=5")
    with pytest.raises(ConfigError, match=r"train \(command line\): unknown key; renamed: schedule"):
        load("train.train_iters=5")  # the section's old name says where it went
    with pytest.raises(ConfigError, match="schedule.train_iters"):
        load("schedule.train_iters=many")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule:\n  train_iters: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        load_config(TrainJobConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainJobConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a dotted assignment"):
        load_config(TrainJobConfig, TINY, ["schedule.train_iters"])
    with pytest.raises(ConfigError, match="no such preset"):
        load_config(TrainJobConfig, TINY, ["model.preset=llama9"])


def test_cli_reports_config_errors_without_traceback():
    from helpers import cli

    proc = cli("train", "--config", TINY, "parallel.tensor_model_parallel_size=3", check=False)
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr and "num_attention_heads" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_problem_at_once_with_its_origin(tmp_path):
    """A type error, an unknown key from the command line, an unknown key and a bad type from a YAML file and a
    semantic check: one list, each naming file:line or the command line."""
    yml = tmp_path / "job.yaml"
    yml.write_text("model:\n  preset: tiny\nschedule:\n  micro_batch_size: two\n  seq_lenght: 64\n"
                   "  seq_length: 64\ndata:\n  mock: true\n")
    with pytest.raises(ConfigError) as exc:
        load_config(TrainJobConfig, yml, ["schedule.train_iters=abc", "optim.lrr=1", "optim.lr=-1"])
    problems = exc.value.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert "schedule.train_iters='abc' (command line): Value 'abc' of type 'str' could not be converted to Integer" in text
    assert "optim.lrr (command line): unknown key; did you mean optim.lr?" in text
    assert f"schedule.micro_batch_size='two' ({yml}:4)" in text
    assert f"schedule.seq_lenght ({yml}:5): unknown key; did you mean schedule.seq_length?" in text
    assert "optim.lr=-1.0: must be > 0" in text


@pytest.mark.slow
def test_launcher_validates_before_any_rank_starts():
    """With --nproc-per-node 2 a bad config is reported once, by the launcher, in a few seconds, exit 2."""
    import time

    from helpers import cli

    t = time.time()
    proc = cli("train", "--nproc-per-node", "2", "--config", TINY, "schedule.train_iters=abc", "optim.lrr=1",
               check=False, timeout=300)
    seconds = time.time() - t
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.count("schedule.train_iters='abc'") == 1 and out.count("did you mean optim.lr?") == 1, out
    assert "Traceback" not in out and "rank" not in out.lower(), out
    assert seconds < 30, seconds


def test_stage_help_shows_only_real_defaults():
    """Every stage's --help (and its subcommands'): no "(default: None)" / "(default: False)" / "(default: [])"
    clutter; real defaults are still shown."""
    from findap_nemo.cli import STAGES, build_parser

    for stage in STAGES:
        parser = build_parser(stage)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[stage]
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for text in [sub.format_help()] + [p.format_help() for a in nested for p in a.choices.values()]:
            assert "(default: None)" not in text and "(default: False)" not in text, (stage, text)
            assert "(default: [])" not in text, (stage, text)
    from findap_nemo.cli import _LazyHelpFormatter

    probe = argparse.ArgumentParser(formatter_class=_LazyHelpFormatter)
    probe.add_argument("--dtype", default="auto", help="stored dtype")
    probe.add_argument("--tokenizer", default=None, help="tokenizer folder")
    text = probe.format_help()
    assert "(default: auto)" in text and "(default: None)" not in text  # a real default is still shown


def test_help_config_lists_every_key_with_its_comment():
    """`--help-config`: every key of each stage's schema, with type, default and the comment on its field."""
    from findap_nemo.config import config_to_dict
    from findap_nemo.cli import STAGES
    from findap_nemo.config.describe import describe, schema_of

    SCHEMAS = {name: s.schema for name, s in STAGES.items() if s.schema}

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v and not k.endswith(("_weights", "task_limits", "models", "vars", "env")):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    for stage in SCHEMAS:
        schema = schema_of(SCHEMAS[stage])
        keys = [r[0] for r in describe(schema)]
        assert len(keys) == len(set(keys)) and keys, stage
        try:
            instance = schema()
        except TypeError:
            continue
        expected = {k for k in leaves(config_to_dict(instance))}
        assert expected <= set(keys) | {k.rsplit(".", 1)[0] for k in keys}, (stage, expected - set(keys))
    out = cli("train", "--help-config").stdout
    assert "optim.lr: float = 5.0e-06\n    FinDAP CPT+IT" in out
    assert "checkpoint.optimizer_sharding: str = fully_reshardable" in out  # inherited sections documented too
    assert "schedule.global_batch_size: int = 16\n    sequences per optimizer step" in out
    assert "blend.kinds: list = [cpt, it]\n    Which kinds the blend trains on" in cli("data", "--help-config").stdout
    bad = cli("doctor", "--help-config", check=False)
    assert bad.returncode == 2 and "has no config file" in bad.stderr


def test_one_word_for_redo_and_renamed_keys_say_so(tmp_path):
    """data, eval and genrm share `force` (true: discard an earlier run's output and redo; false: keep finished
    work); the keys it replaced fail with the new name, not a guess."""
    from findap_nemo.cli import STAGES
    from findap_nemo.config.describe import schema_of

    for stage in ("data", "eval", "genrm"):
        assert schema_of(STAGES[stage].schema)().force is False, stage
    cases = [("data", "configs/data/demo.yaml", "overwrite=true", "overwrite (command line): unknown key; renamed: force"),
             ("eval", "configs/eval/demo.yaml", "overwrite=false", "overwrite (command line): unknown key; renamed: force"),
             ("genrm", "configs/genrm/demo.yaml", "resume=false", "resume=false is force=true")]
    for stage, config, override, expected in cases:
        proc = cli(stage, "--config", config, override, "--print-config", check=False)
        assert proc.returncode == 2 and expected in proc.stderr, (stage, proc.stderr)
    # every stage with a config file prints it resolved, the same way
    for stage in {name for name, s in STAGES.items() if s.schema} - {"slurm"}:  # slurm's config is a cluster description its subcommands read
        assert "--print-config" in cli(*{"convert": ("convert", "mcore-to-hf")}.get(stage, (stage,)), "--help").stdout, stage
    # overrides are accepted anywhere on the line, also after a flag; other unknown words stay errors
    printed = cli("data", "--config", "configs/data/demo.yaml", "seed=5", "--print-config", "output_dir=/tmp/x").stdout
    assert "seed: 5" in printed and "output_dir: /tmp/x" in printed
    proc = cli("data", "--config", "configs/data/demo.yaml", "--print-config", "--bogus", "seed=5", check=False)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    proc = cli("doctor", "seed=5", check=False)
    assert proc.returncode == 2 and "unrecognized arguments: seed=5" in proc.stderr
