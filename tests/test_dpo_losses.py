"""DPO/IPO/RPO losses against hand computations on fixed log-probs, and the config rules around them."""

from __future__ import annotations

import math

import pytest
import torch

from findap_nemo.config import ConfigError
from findap_nemo.dpo.losses import pair_losses, reduce_logps

# Two pairs, interleaved [chosen_0, rejected_0, chosen_1, rejected_1]: summed response log-probs and lengths.
POLICY = [-10.0, -14.0, -20.0, -18.5]
REF = [-11.0, -12.0, -19.0, -19.0]
COUNTS = [4, 5, 10, 8]
GT = [0.9, 0.2, 0.6, 0.7]
BETA = 0.5


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _kl(p, q):
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _hand(kind, average=False, scale=1.0):
    out = []
    for i in (0, 2):
        rc, rr = POLICY[i] - REF[i], POLICY[i + 1] - REF[i + 1]
        if average:
            rc, rr = rc / COUNTS[i], rr / COUNTS[i + 1]
        d = rc - rr
        dgt = GT[i] - GT[i + 1]
        if kind == "dpo":
            out.append(math.log(1 + math.exp(-BETA * d)))
        elif kind == "ipo":
            out.append((d - 1 / (2 * BETA)) ** 2)
        elif kind == "rpo_sq":
            out.append((BETA * d - scale * dgt) ** 2)
        elif kind == "rpo_fwd_kl":
            out.append(_kl(_sig(BETA * d), _sig(scale * dgt)))
        elif kind == "rpo_bwd_kl":
            out.append(_kl(_sig(scale * dgt), _sig(BETA * d)))
    return out


def _run(kind, **kw):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return pair_losses(t(POLICY), t(REF), t(COUNTS), t(GT), kind=kind, beta=BETA, **kw)


@pytest.mark.parametrize("kind", ["dpo", "ipo", "rpo_sq", "rpo_fwd_kl", "rpo_bwd_kl"])
@pytest.mark.parametrize("average", [False, True])
def test_preference_loss_matches_hand_computation(kind, average):
    pl = _run(kind, preference_average_log_probs=average, gt_reward_scale=2.0)
    expected = _hand(kind, average, scale=2.0)
    assert pl.total.tolist() == pytest.approx(expected, rel=1e-12)
    assert pl.preference.tolist() == pytest.approx(expected, rel=1e-12)


def test_rewards_margin_accuracy_and_sft_term():
    pl = _run("dpo", preference_loss_weight=0.5, sft_loss_weight=2.0)
    # rewards = beta * (policy - reference) per response
    assert pl.rewards_chosen.tolist() == pytest.approx([0.5 * 1.0, 0.5 * -1.0])
    assert pl.rewards_rejected.tolist() == pytest.approx([0.5 * -2.0, 0.5 * 0.5])
    assert pl.margin.tolist() == pytest.approx([1.5, -0.75])
    assert pl.accuracy.tolist() == [1.0, 0.0]
    assert pl.sft.tolist() == pytest.approx([10.0, 20.0])
    expected = [0.5 * d + 2.0 * s for d, s in zip(_hand("dpo"), [10.0, 20.0])]
    assert pl.total.tolist() == pytest.approx(expected, rel=1e-12)
    avg = _run("dpo", sft_loss_weight=1.0, sft_average_log_probs=True)
    assert avg.sft.tolist() == pytest.approx([10.0 / 4, 20.0 / 10])


def test_gradient_flows_to_policy_only():
    policy = torch.tensor(POLICY, requires_grad=True)
    pl = pair_losses(policy, torch.tensor(REF), torch.tensor(COUNTS), torch.tensor(GT), kind="dpo", beta=BETA)
    pl.total.sum().backward()
    # d/d(policy chosen_0) of -logsigmoid(beta*D) = -beta * sigmoid(-beta*D)
    d0 = (POLICY[0] - REF[0]) - (POLICY[1] - REF[1])
    assert policy.grad[0].item() == pytest.approx(-BETA * _sig(-BETA * d0), rel=1e-6)
    assert policy.grad[1].item() == pytest.approx(BETA * _sig(-BETA * d0), rel=1e-6)


def test_reduce_logps_masks_prompt_and_padding():
    lp = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-0.5, -0.5, -0.5, -0.5]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]])
    s, n = reduce_logps(lp, mask)
    assert s.tolist() == [-5.0, -0.5] and n.tolist() == [2.0, 1.0]


def test_config_rejects_no_objective_and_unknown_loss(tmp_path):
    from findap_nemo.config import load_config
    from findap_nemo.dpo.config import DPOJobConfig

    with pytest.raises(ConfigError) as err:
        load_config(DPOJobConfig, "configs/dpo/tiny_cpu.yaml",
                    ["dpo.preference_loss_weight=0", "dpo.sft_loss_weight=0", "dpo.preference_loss=kto",
                     "dpo.ref_policy_kl_penalty=0", f"data.train_file={tmp_path}/missing.jsonl",
                    "schedule.global_batch_size=4"], world_size=2)
    text = str(err.value)
    for needle in ("both 0", "dpo.preference_loss='kto'", "dpo.ref_policy_kl_penalty=0", "data.train_file",
                   "checkpoint.pretrained", "model.tokenizer"):
        assert needle in text, (needle, text)


def test_shipped_findap_config_is_dpo_plus_nll():
    import yaml

    cfg = yaml.safe_load(open("configs/dpo/findap_llama3_8b.yaml"))
    assert cfg["dpo"]["preference_loss"] == "dpo" and cfg["dpo"]["sft_loss_weight"] > 0
    assert cfg["optim"]["lr"] == 5e-7 and cfg["schedule"]["seq_length"] == 2048


def test_sft_reductions_hand_computed():
    """sum: per pair; sequence_mean: per pair over its own tokens; token_mean: pooled over all chosen tokens."""
    red = {r: _run("dpo", sft_loss_weight=1.0, sft_reduction=r).sft for r in ("sum", "sequence_mean", "token_mean")}
    assert red["sum"].tolist() == pytest.approx([10.0, 20.0])
    assert red["sequence_mean"].tolist() == pytest.approx([10.0 / 4, 20.0 / 10])
    assert red["token_mean"].mean().item() == pytest.approx((10.0 + 20.0) / (4 + 10))  # != mean(2.5, 2.0)
    assert red["sequence_mean"].mean().item() == pytest.approx(2.25)
    # the older key keeps its meaning
    assert _run("dpo", sft_average_log_probs=True).sft.tolist() == red["sequence_mean"].tolist()
    with pytest.raises(ValueError, match="sft_loss_reduction"):
        _run("dpo", sft_reduction="mean")


def test_token_mean_equals_trl_pooled_cross_entropy():
    """TRL's rpo_alpha term: cross-entropy over every chosen response token of the batch (ignore_index elsewhere)."""
    g = torch.Generator().manual_seed(0)
    n_pairs, S, V = 3, 9, 11
    logits = torch.randn(2 * n_pairs, S, V, generator=g, dtype=torch.float64)
    labels = torch.randint(0, V, (2 * n_pairs, S), generator=g)
    lengths = [2, 7, 4, 5, 1, 3]  # response tokens per sequence (chosen: 2, 4, 1), at the end of each sequence
    mask = torch.zeros(2 * n_pairs, S, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, S - n:] = 1
    token_lp = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
    sums, counts = reduce_logps(token_lp, mask)
    pl = pair_losses(sums, sums.detach(), counts, torch.zeros(2 * n_pairs), kind="dpo", beta=0.1,
                     sft_loss_weight=1.0, sft_reduction="token_mean")
    trl_labels = labels[0::2].masked_fill(mask[0::2] == 0, -100)
    trl = torch.nn.functional.cross_entropy(logits[0::2].reshape(-1, V), trl_labels.reshape(-1), ignore_index=-100)
    assert pl.sft.mean().item() == pytest.approx(trl.item(), rel=1e-12)
    seq = pair_losses(sums, sums.detach(), counts, torch.zeros(2 * n_pairs), kind="dpo", beta=0.1,
                      sft_loss_weight=1.0, sft_reduction="sequence_mean")
    assert abs(seq.sft.mean().item() - trl.item()) > 1e-3  # unequal lengths: the two conventions differ


def test_config_sft_reduction_keys(tmp_path):
    from findap_nemo.dpo.config import DPOLossConfig

    assert DPOLossConfig().sft_reduction == "sum"
    assert DPOLossConfig(sft_average_log_probs=True).sft_reduction == "sequence_mean"
    assert DPOLossConfig(preference_average_log_probs=True).sft_reduction == "sequence_mean"
    assert DPOLossConfig(sft_loss_reduction="token_mean").sft_reduction == "token_mean"
    import yaml

    for f in ("findap_llama3_8b", "llama3-8b-dpo-1node", "llama3-70b-dpo-8node"):
        d = yaml.safe_load(open(f"configs/dpo/{f}.yaml"))["dpo"]
        assert d["sft_loss_reduction"] == "token_mean" and "sft_average_log_probs" not in d  # TRL's pooling
    from findap_nemo.config import load_config
    from findap_nemo.dpo.config import DPOJobConfig

    with pytest.raises(ConfigError) as err:
        load_config(DPOJobConfig, "configs/dpo/tiny_cpu.yaml",
                    ["dpo.sft_loss_reduction=per_pair", "dpo.sft_average_log_probs=true"])
    assert "dpo.sft_loss_reduction='per_pair'" in str(err.value) and "dpo.sft_average_log_probs" in str(err.value)
