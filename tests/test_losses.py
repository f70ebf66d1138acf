"""Each loss against an independent, straightforward computation on random tensors."""

from __future__ import annotations

import math

import pytest
import torch

from distilwhisper import losses


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_cross_entropy_with_label_smoothing_by_hand():
    logits, labels = _rand(2, 3, 7), torch.tensor([[1, 2, -100], [0, 6, 3]])
    total, count = 0.0, 0
    for b in range(2):
        for t in range(3):
            if labels[b, t] == -100:
                continue
            logp = torch.log_softmax(logits[b, t], -1)
            total += 0.9 * -logp[labels[b, t]] + 0.1 * -logp.mean()
            count += 1
    assert torch.allclose(losses.cross_entropy(logits, labels, 0.1), total / count, atol=1e-6)


def _js_by_hand(p, q):
    m = 0.5 * (p + q)
    kl = lambda a, b: sum(float(a[i]) * math.log(float(a[i]) / float(b[i])) for i in range(len(a)) if a[i] > 0)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def test_js_and_kl_from_logits_masked_on_padding():
    s, t = _rand(2, 4, 9, seed=1), _rand(2, 4, 9, seed=2)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    for T in (1.0, 2.0):
        js = kl = 0.0
        for b, i in mask.nonzero().tolist():
            p, q = torch.softmax(s[b, i] / T, -1), torch.softmax(t[b, i] / T, -1)
            js += _js_by_hand(p, q)
            kl += float((q * (q.log() - p.log())).sum())
        n = mask.sum().item()
        assert abs(losses.kd_loss_logits(s, t, mask, "js", T).item() - js / n * T * T) < 1e-5
        assert abs(losses.kd_loss_logits(s, t, mask, "kl", T).item() - kl / n * T * T) < 1e-5
    # padding positions do not count: changing them changes nothing
    t2 = t.clone()
    t2[0, 3] += 100
    assert losses.kd_loss_logits(s, t2, mask).item() == pytest.approx(losses.kd_loss_logits(s, t, mask).item())


def test_topk_js_is_exact_for_the_truncated_teacher():
    """From a cache, the teacher is its top-k renormalised: the closed form equals JS against that distribution."""
    s, t = _rand(1, 3, 50, seed=3), _rand(1, 3, 50, seed=4) * 3
    mask = torch.ones(1, 3)
    top = torch.log_softmax(t, -1).topk(10, -1)
    expected = 0.0
    for i in range(3):
        q = torch.zeros(50)
        q[top.indices[0, i]] = torch.softmax(top.values[0, i], -1)
        expected += _js_by_hand(torch.softmax(s[0, i], -1), q)
    got = losses.kd_loss_topk(s, top.values, top.indices, mask, "js")
    assert got.item() == pytest.approx(expected / 3, abs=1e-5)
    # with k = vocabulary size the cached loss is the live one
    every = torch.log_softmax(t, -1).topk(50, -1)
    assert losses.kd_loss_topk(s, every.values, every.indices, mask).item() == pytest.approx(
        losses.kd_loss_logits(s, t, mask).item(), abs=1e-5)


def test_gate_budget_and_weighting():
    g_enc, g_dec = torch.full((2, 5), 0.9), torch.tensor([[0.2, 0.2, 0.9], [0.2, 0.9, 0.9]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    expected = abs((0.9 * 10 + 0.2 * 3) / 13 - 0.5)
    assert losses.gate_budget([g_enc, g_dec], [None, mask]).item() == pytest.approx(expected)
    assert losses.gate_budget([g_enc, g_dec], [None, mask], target=0.75).item() == pytest.approx(
        abs((0.9 * 10 + 0.2 * 3) / 13 - 0.75), abs=1e-6)
    ce, gate, kd = torch.tensor(2.0), torch.tensor(0.1), torch.tensor(0.4)
    assert losses.total_loss(ce, gate, kd).item() == pytest.approx(0.25 * 2.1 + 0.5 * 0.4)
    assert losses.total_loss(ce, gate, None).item() == pytest.approx(2.1)
