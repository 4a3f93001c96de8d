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
                    "train.global_batch_size=4"], world_size=2)
    text = str(err.value)
    for needle in ("both 0", "dpo.preference_loss='kto'", "dpo.ref_policy_kl_penalty=0", "data.train_file",
                   "checkpoint.pretrained", "model.tokenizer"):
        assert needle in text, (needle, text)


def test_shipped_findap_config_is_dpo_plus_nll():
    import yaml

    cfg = yaml.safe_load(open("configs/dpo/findap_llama3_8b.yaml"))
    assert cfg["dpo"]["preference_loss"] == "dpo" and cfg["dpo"]["sft_loss_weight"] > 0
    assert cfg["optim"]["lr"] == 5e-7 and cfg["train"]["seq_length"] == 2048
