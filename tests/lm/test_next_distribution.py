"""The paper's losses against hand-computed KLs, masking, and the stop statistic."""

import math

import torch
from torch.distributions import Normal, kl_divergence

from espnet_kalle.lm.next_distribution import EndDistribution, gaussian_kl, next_distribution_loss


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mq, lq, mp, lp = (torch.randn(5, 7) for _ in range(4))
    expected = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp()))
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), expected, atol=1e-5, rtol=1e-5)


def test_loss_terms_equal_hand_computed_kls():
    torch.manual_seed(1)
    b, t, d = 2, 4, 3
    lengths = torch.tensor([4, 2])
    pred_mu, pred_ls = torch.randn(b, t + 1, d), 0.2 * torch.randn(b, t + 1, d)
    tgt_mu, tgt_ls = torch.randn(b, t, d), 0.2 * torch.randn(b, t, d)
    out = next_distribution_loss(pred_mu, pred_ls, tgt_mu, tgt_ls, lengths, lambda_end=0.5)

    frames, end = 0.0, 0.0
    for i in range(b):
        n = int(lengths[i])
        for s in range(n):
            q = Normal(tgt_mu[i, s], tgt_ls[i, s].exp())
            p = Normal(pred_mu[i, s], pred_ls[i, s].exp())
            frames += kl_divergence(q, p).sum().item()
        n_end = Normal(torch.ones(d), torch.full((d,), math.e))  # N(1, e)
        end += kl_divergence(n_end, Normal(pred_mu[i, n], pred_ls[i, n].exp())).sum().item()
    assert abs(out["kl_frames_sum"].item() - frames) < 1e-4
    assert abs(out["kl_end_sum"].item() - end) < 1e-4
    assert abs(out["loss"].item() - (frames + 0.5 * end) / 6) < 1e-4


def test_padding_does_not_change_the_loss_of_unpadded_items():
    torch.manual_seed(2)
    d = 4
    pred_mu, pred_ls = torch.randn(1, 4, d), torch.zeros(1, 4, d)
    tgt_mu, tgt_ls = torch.randn(1, 3, d), torch.zeros(1, 3, d)
    alone = next_distribution_loss(pred_mu, pred_ls, tgt_mu, tgt_ls, torch.tensor([3]))
    pad = lambda x, n: torch.cat([x, 99 * torch.ones(1, n, d)], dim=1)  # noqa: E731 garbage in padding
    padded = next_distribution_loss(
        pad(pred_mu, 3), pad(pred_ls, 3) * 0, pad(tgt_mu, 3), pad(tgt_ls, 3) * 0, torch.tensor([3])
    )
    torch.testing.assert_close(padded["loss"], alone["loss"])
    # In a batch with a longer item the first item's terms are unchanged too.
    other = (torch.randn(1, 7, d), torch.zeros(1, 7, d), torch.randn(1, 6, d), torch.zeros(1, 6, d))
    batch = next_distribution_loss(
        torch.cat([pad(pred_mu, 3), other[0]]), torch.cat([pad(pred_ls, 3) * 0, other[1]]),
        torch.cat([pad(tgt_mu, 3), other[2]]), torch.cat([pad(tgt_ls, 3) * 0, other[3]]), torch.tensor([3, 6]),
    )
    second = next_distribution_loss(*other, torch.tensor([6]))
    torch.testing.assert_close(batch["kl_frames_sum"], alone["kl_frames_sum"] + second["kl_frames_sum"])
    torch.testing.assert_close(batch["kl_end_sum"], alone["kl_end_sum"] + second["kl_end_sum"])


def test_stop_statistic_is_zero_at_the_end_distribution():
    end = EndDistribution()
    mu, ls = torch.ones(2, 6), torch.ones(2, 6)
    torch.testing.assert_close(end.kl_from(mu, ls), torch.zeros(2))
    assert (end.kl_from(torch.zeros(2, 6), torch.zeros(2, 6)) > 0.5).all()
