"""Output heads (KALL-E Gaussian KL, MELLE, SLED energy distance, Gaussian mixture): losses against hand
computations and torch.distributions, the energy-distance repulsion term, the mixture's component picks,
overfitting 4 real sequences, KV-cached generation and MELLE's reduction factor."""

import math

import pytest
import torch
import torch.nn.functional as F

from espnet_kalle.lm.generate import GenerationConfig, generate, seeded_generators
from espnet_kalle.lm.heads import HEADS, EnergyDistanceHead, GaussianKLHead, GaussianMixtureHead, MelleHead, build_head
from espnet_kalle.lm.heads.base import HeadStep
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.next_distribution import next_distribution_loss
from espnet_kalle.tts.kalle import KallE

H, D = 12, 3
LENGTHS = torch.tensor([4, 2])


def fixed_batch(seed=0, t_max=4):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, t_max + 1, H, generator=g)
    mu = torch.randn(2, t_max, D, generator=g)
    log_sigma = torch.randn(2, t_max, D, generator=g) * 0.3 - 1.0
    z_in = mu + log_sigma.exp() * torch.randn(2, t_max, D, generator=g)
    return hidden, mu, log_sigma, z_in


def bce(logit, label):
    p = torch.sigmoid(logit)
    return -(label * torch.log(p) + (1 - label) * torch.log(1 - p))


# ---------------------------------------------------------------- losses by hand
def test_registry_and_default_head_keep_the_checkpoint_names():
    assert set(HEADS) == {"gaussian_kl", "melle", "energy_distance", "gaussian_mixture"}
    model = KalleLM(vocab_size=10, latent_dim=D, hidden_size=16, num_layers=1, num_heads=2)
    assert isinstance(model.head, GaussianKLHead) and model.frames_per_step == 1
    assert {k for k in model.state_dict() if k.startswith("head.")} == {
        "head.distribution_linear.weight", "head.distribution_linear.bias"}
    with pytest.raises(ValueError, match="unknown head"):
        build_head("diffusion", H, D)


def test_gaussian_kl_loss_is_kalles_objective():
    torch.manual_seed(0)
    head = GaussianKLHead(H, D, lambda_end=0.5)
    hidden, mu, log_sigma, z_in = fixed_batch()
    out = head.loss(hidden, mu, log_sigma, LENGTHS, z_in)
    p_mu, p_ls = head(hidden)
    expected = next_distribution_loss(p_mu, p_ls, mu, log_sigma, LENGTHS, lambda_end=0.5)["loss"]
    torch.testing.assert_close(out["loss"], expected)
    # and by hand: KL(q || p) per frame, KL(N(1, e) || p) at the step after the end
    total = 0.0
    for b, n in enumerate(LENGTHS.tolist()):
        for t in range(n):
            sq, sp = log_sigma[b, t].exp(), p_ls[b, t].exp()
            total += (torch.log(sp / sq) + (sq**2 + (mu[b, t] - p_mu[b, t]) ** 2) / (2 * sp**2) - 0.5).sum()
        sp = p_ls[b, n].exp()
        total += 0.5 * (torch.log(sp / math.e) + (math.e**2 + (1 - p_mu[b, n]) ** 2) / (2 * sp**2) - 0.5).sum()
    torch.testing.assert_close(out["loss"], total / LENGTHS.sum())


@pytest.mark.parametrize("r", [1, 2])
def test_melle_loss_by_hand(r):
    torch.manual_seed(1)
    head = MelleHead(H, D, reduction_factor=r, mlp_size=8, lambda_kl=0.1, lambda_flux=0.5, lambda_stop=1.0)
    t_max = 4
    hidden, mu, log_sigma, z_in = fixed_batch(seed=r, t_max=t_max)
    hidden = hidden[:, : t_max // r + 1]
    noise = torch.randn(2, t_max, D)
    out = head.loss(hidden, mu, log_sigma, LENGTHS, z_in, noise=noise)

    W, c = head.sampling_linear.weight, head.sampling_linear.bias
    l1, l2 = head.residual_mlp[0], head.residual_mlp[2]
    reg = kl = flux = stop = 0.0
    for b, n in enumerate(LENGTHS.tolist()):
        for t in range(n):
            s, k = divmod(t, r)  # step s predicts frames s*r .. s*r + r - 1
            out_s = W @ hidden[b, s] + c
            m, lv = out_s[2 * D * k : 2 * D * k + D], out_s[2 * D * k + D : 2 * D * (k + 1)]
            z = m + torch.exp(lv / 2) * noise[b, t]
            y_hat = z + l2.weight @ torch.relu(l1.weight @ z + l1.bias) + l2.bias
            y = mu[b, t]
            reg += (y_hat - y).abs().sum() + ((y_hat - y) ** 2).sum()  # L1 + L2 regression
            kl += 0.5 * (lv.exp() + (m - y) ** 2 - 1 - lv).sum()  # KL(N(m, e^lv) || N(y, I))
            if t > 0:
                flux -= (m - mu[b, t - 1]).abs().sum()  # spectrogram flux
        n_steps = -(-n // r)
        for s in range(n_steps + 1):
            logit = head.stop_linear.weight[0] @ hidden[b, s] + head.stop_linear.bias[0]
            stop += bce(logit, float(s == n_steps))
    expected = (reg + 0.1 * kl + 0.5 * flux + stop) / LENGTHS.sum()
    torch.testing.assert_close(out["loss"], expected)
    assert set(out["stats"]) == {"reg", "kl", "flux", "stop_bce"}


def energy_head(seed=2, **conf):
    torch.manual_seed(seed)
    return EnergyDistanceHead(H, D, mlp_size=10, num_blocks=2, noise_dim=4, **conf)


def generate_by_hand(head, h, e):
    x = head.input_linear.weight @ h + head.input_linear.bias
    cond = F.silu(head.noise_embed[0].weight @ e + head.noise_embed[0].bias)
    for block in head.blocks:
        shift, scale, gate = (block.modulation.weight @ cond + block.modulation.bias).chunk(3)
        a = F.layer_norm(x, x.shape) * (1 + scale) + shift
        x = x + gate * (block.mlp[2].weight @ F.silu(block.mlp[0].weight @ a + block.mlp[0].bias) + block.mlp[2].bias)
    x = F.layer_norm(x, x.shape, head.out_norm.weight, head.out_norm.bias)
    return head.out_linear.weight @ x + head.out_linear.bias


@pytest.mark.parametrize("target", ["sample", "mean"])
def test_energy_distance_loss_by_hand_includes_the_repulsion_term(target):
    head = energy_head(target=target, lambda_stop=0.7)
    hidden, mu, log_sigma, z_in = fixed_batch(seed=3)
    noise = (torch.randn(2, 4, 4), torch.randn(2, 4, 4))
    out = head.loss(hidden, mu, log_sigma, LENGTHS, z_in, noise=noise)
    attraction = repulsion = stop = 0.0
    for b, n in enumerate(LENGTHS.tolist()):
        for t in range(n):
            x1 = generate_by_hand(head, hidden[b, t], noise[0][b, t])
            x2 = generate_by_hand(head, hidden[b, t], noise[1][b, t])
            y = z_in[b, t] if target == "sample" else mu[b, t]
            attraction += torch.linalg.norm(x1 - y) + torch.linalg.norm(x2 - y)
            repulsion += torch.linalg.norm(x1 - x2)
        for s in range(n + 1):
            stop += bce(head.stop_linear.weight[0] @ hidden[b, s] + head.stop_linear.bias[0], float(s == n))
    # Generalized energy distance (SLED): E||x1 - y|| + E||x2 - y|| - ||x1 - x2||, plus the stop BCE.
    expected = (attraction - repulsion + 0.7 * stop) / LENGTHS.sum()
    torch.testing.assert_close(out["loss"], expected)
    # far above assert_close's tolerance, so a loss without the repulsion term fails the comparison above
    assert repulsion / LENGTHS.sum() > 1e3 * 1.3e-6 * expected.abs()
    torch.testing.assert_close(out["stats"]["repulsion"], repulsion / LENGTHS.sum())


def test_energy_distance_prefers_the_true_distribution_over_its_median():
    """The repulsion term makes the score proper: samples from the target's distribution beat a point at its median.

    Without it (attraction only) the collapsed point wins, so a head that drops the term fails here."""
    head = energy_head(lambda_stop=0.0)
    torch.manual_seed(4)
    hidden = torch.zeros(1, 2001, H)
    y = torch.randn(1, 2000, 4)  # targets ~ N(0, I) in 4 dims
    lengths = torch.tensor([2000])
    noise = (torch.randn(1, 2000, 4), torch.randn(1, 2000, 4))
    head.generate = lambda h, e: e  # samples from the true distribution
    true = head.loss(hidden, y, y, lengths, y, noise=noise)
    head.generate = lambda h, e: torch.zeros_like(e)  # collapsed onto the median
    point = head.loss(hidden, y, y, lengths, y, noise=noise)
    assert true["loss"] < point["loss"] - 0.2, (true["loss"], point["loss"])
    assert true["stats"]["attraction"] > point["stats"]["attraction"]  # attraction alone would prefer the point


# ---------------------------------------------------------------- the Gaussian mixture head
def mixture_head(seed=5, k=3, **conf):
    torch.manual_seed(seed)
    head = GaussianMixtureHead(H, D, num_components=k, **conf)
    with torch.no_grad():  # components and weights well apart, as after training
        head.component_linear.weight.normal_(std=0.3)
        head.weight_linear.weight.normal_(std=0.5)
    return head


def mixture_of(logits, mu, log_sigma):
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(torch.distributions.Normal(mu, log_sigma.exp()), 1))


def test_gaussian_mixture_loss_is_the_variational_kl_bound_plus_the_stop_bce():
    head = mixture_head(lambda_stop=0.6)
    hidden, mu, log_sigma, z_in = fixed_batch(seed=6)
    out = head.loss(hidden, mu, log_sigma, LENGTHS, z_in)
    logits, p_mu, p_ls = head.mixture(hidden)
    kl = stop = 0.0
    for b, n in enumerate(LENGTHS.tolist()):
        for t in range(n):
            q = torch.distributions.Normal(mu[b, t], log_sigma[b, t].exp())
            kl_k = torch.stack([torch.distributions.kl_divergence(q, torch.distributions.Normal(
                p_mu[b, t, k], p_ls[b, t, k].exp())).sum() for k in range(3)])
            weights = torch.softmax(logits[b, t], -1)
            kl += -torch.log((weights * torch.exp(-kl_k)).sum())  # -log sum_k pi_k exp(-KL(q || p_k))
        for s in range(n + 1):
            stop += bce(head.stop_linear.weight[0] @ hidden[b, s] + head.stop_linear.bias[0], float(s == n))
    torch.testing.assert_close(out["stats"]["kl_frame"], (kl / LENGTHS.sum()).detach())
    torch.testing.assert_close(out["loss"], (kl + 0.6 * stop) / LENGTHS.sum())


def test_mixture_kl_bound_is_above_the_sampled_kl_and_kalles_kl_for_one_component():
    head = mixture_head(seed=8)
    hidden, mu, log_sigma, _ = fixed_batch(seed=9, t_max=1)
    lengths = torch.tensor([1, 1])
    logits, p_mu, p_ls = head.mixture(hidden[:, :1])

    def bound_and_sampled(q_log_sigma):
        q = torch.distributions.Independent(torch.distributions.Normal(mu, q_log_sigma.exp()), 1)
        z = q.sample((20000,))
        sampled = (q.log_prob(z) - mixture_of(logits, p_mu, p_ls).log_prob(z)).mean(0).sum()
        return float(head.loss(hidden, mu, q_log_sigma, lengths)["kl_frames_sum"]), float(sampled)

    torch.manual_seed(0)
    bound, sampled = bound_and_sampled(log_sigma)
    assert bound > sampled
    bound, sampled = bound_and_sampled(torch.full_like(log_sigma, -4.0))  # a posterior narrower than the components
    assert sampled < bound < sampled + 0.02 * abs(sampled), (bound, sampled)
    one = GaussianMixtureHead(H, D, num_components=1)
    kalle = GaussianKLHead(H, D)
    kalle.load_state_dict(one.state_dict(), strict=False)
    with torch.no_grad():  # the one component's offsets folded into KALL-E's layer: the same Gaussian
        kalle.distribution_linear.weight += one.component_linear.weight
        kalle.distribution_linear.bias += one.component_linear.bias
    torch.testing.assert_close(one.loss(hidden, mu, log_sigma, lengths)["kl_frames_sum"],
                               kalle.loss(hidden, mu, log_sigma, lengths)["kl_frames_sum"])


def test_mixture_head_loads_a_kalle_head_and_starts_as_its_gaussian():
    kalle = GaussianKLHead(H, D)
    mixture = GaussianMixtureHead(H, D, num_components=4)
    missing, unexpected = mixture.load_state_dict(kalle.state_dict(), strict=False)
    assert not unexpected and all(not k.startswith("distribution_linear") for k in missing)
    hidden = torch.randn(5, H)
    logits, mu, log_sigma = mixture.mixture(hidden)
    g_mu, g_ls = kalle(hidden)
    torch.testing.assert_close(torch.softmax(logits, -1), torch.full((5, 4), 0.25))  # equal weights at the start
    assert (mu - g_mu[:, None]).abs().max() < 0.5 and (log_sigma - g_ls[:, None]).abs().max() < 0.5
    assert (mu[:, 0] - mu[:, 1]).abs().max() > 1e-3  # apart, so the components can specialise


def test_mixture_sampling_picks_components_by_their_weights():
    head = mixture_head(k=3)
    n = 6000
    logits = torch.tensor([[0.0, math.log(3.0), math.log(6.0)]]).expand(n, 3)
    mu = torch.tensor([[-10.0], [0.0], [10.0]]).expand(n, 3, D)
    step = HeadStep(stop=torch.zeros(n, dtype=torch.bool), params=(logits, mu, torch.full((n, 3, D), -3.0)))
    noise = torch.randn(n, D + 1, generator=torch.Generator().manual_seed(0))
    z = head.sample(step, noise, 1.0)[:, 0, 0]
    shares = torch.stack([(z < -5).float().mean(), (z.abs() < 5).float().mean(), (z > 5).float().mean()])
    torch.testing.assert_close(shares, torch.tensor([0.1, 0.3, 0.6]), atol=0.02, rtol=0)
    # temperature sharpens the pick as it scales sigma: softmax(logits / 0.5) = (1, 9, 36) / 46
    z_half = head.sample(step, noise, 0.5)[:, 0, 0]
    assert abs(float((z_half > 5).float().mean()) - 36 / 46) < 0.02
    # at 0, the most probable component's mean: what ``point`` decodes for probes
    torch.testing.assert_close(head.sample(step, noise, 0.0)[:, 0], mu[:, 2])
    hidden = torch.randn(4, H)
    h_logits, h_mu, _ = head.mixture(hidden)
    torch.testing.assert_close(head.point(hidden), h_mu[torch.arange(4), h_logits.argmax(-1)])


# ---------------------------------------------------------------- overfit + generation
CASES = {
    "gaussian_kl": ("gaussian_kl", {}),
    "melle": ("melle", dict(mlp_size=32)),
    "melle_r2": ("melle", dict(mlp_size=32, reduction_factor=2)),
    "energy_distance": ("energy_distance", dict(mlp_size=64, noise_dim=8)),
    "gaussian_mixture": ("gaussian_mixture", dict(num_components=3)),
}
LATENT16, LOG_SIGMA = 16, math.log(0.1)
STEPS = 300


def four_short_sequences(release_latents):
    a, b = (x[:, :LATENT16] for x in release_latents)
    seqs = [a[:12], a[12:26], b[:16], b[16:34]]
    lengths = torch.tensor([s.shape[0] for s in seqs])
    mu = torch.zeros(4, int(lengths.max()), LATENT16)
    for i, s in enumerate(seqs):
        mu[i, : s.shape[0]] = s
    return mu, torch.full_like(mu, LOG_SIGMA), lengths


def small_lm(name, seed=0):
    head_type, conf = CASES[name]
    torch.manual_seed(seed)
    return KalleLM(vocab_size=20, latent_dim=LATENT16, hidden_size=64, num_layers=2, num_heads=4,
                   intermediate_size=128, max_position_embeddings=256, head_type=head_type, head_conf=conf)


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and do not fight a busy machine's other jobs for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(CASES))
def test_each_head_overfits_four_sequences_and_generates_with_the_cache(name, release_latents, one_thread):
    mu, log_sigma, lengths = four_short_sequences(release_latents)
    model = small_lm(name)
    text = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(7))
    text_lengths = torch.full((4,), 6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_value(seed):
        torch.manual_seed(seed)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        return model.head.loss(model.hidden_states(text, text_lengths, z, lengths), mu, log_sigma, lengths, z)["loss"]

    with torch.no_grad():
        before = loss_value(100).item()
    for step in range(STEPS):
        loss = loss_value(step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = loss_value(100).item()
    assert after < before - 0.5 * abs(before), (before, after)

    config = GenerationConfig(max_frames=60, min_frames=2, temperature=0.3)
    out = generate(model, [model.prefix(text[i]) for i in range(4)], [6] * 4, config, seeded_generators(range(4)))
    r = model.frames_per_step
    for i, (generated, true_length) in enumerate(zip(out, lengths.tolist())):
        assert abs(generated.shape[0] - true_length) <= max(2, r), ([o.shape[0] for o in out], lengths)
        n = min(generated.shape[0], true_length)
        error = (generated[:n] - mu[i, :n]).pow(2).mean()
        assert error < 0.5 * mu[i, :n].var(), (name, i, float(error))  # the frames follow the memorised sequence


@pytest.mark.parametrize("name", list(CASES))
def test_cached_equals_uncached_and_batched_equals_single(name):
    model = small_lm(name, seed=3).eval()
    texts = [torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6]), torch.tensor([7, 8, 9])]
    prefixes = [model.prefix(t) for t in texts]
    config = GenerationConfig(max_frames=16, min_frames=1, stop_threshold=0.6, stop_probability=0.45)
    cached = generate(model, prefixes, [4, 2, 3], config, seeded_generators([0, 1, 2]))
    uncached = generate(model, prefixes, [4, 2, 3], GenerationConfig(**{**config.__dict__, "use_cache": False}),
                        seeded_generators([0, 1, 2]))
    single = [generate(model, [p], [n], config, seeded_generators([s]))[0]
              for p, n, s in zip(prefixes, [4, 2, 3], [0, 1, 2])]
    for a, b, c in zip(cached, uncached, single):
        assert a.shape == b.shape == c.shape and a.shape[1] == LATENT16
        assert (a - b).abs().max() <= 1e-5 and (a - c).abs().max() <= 1e-5
    assert any(a.shape[0] > 0 for a in cached)


@pytest.mark.parametrize("name", ["melle", "energy_distance", "gaussian_mixture"])
def test_guidance_on_the_hidden_state_changes_the_output(name):
    model = small_lm(name, seed=4).eval()
    text = torch.tensor([1, 2, 3])
    p, uncond = [model.prefix(text)], [model.prefix(text[:0])]
    never_stop = dict(max_frames=6, stop_probability=1.0)
    plain = generate(model, p, [3], GenerationConfig(**never_stop), seeded_generators([0]))[0]
    guided = generate(model, p, [3], GenerationConfig(guidance_weight=2.0, **never_stop), seeded_generators([0]),
                      uncond)[0]
    assert plain.shape == guided.shape == (6, LATENT16) and not torch.allclose(plain, guided)


def test_melle_reduction_factor_yields_r_frames_per_step():
    model = small_lm("melle_r2").eval()
    assert model.frames_per_step == 2 and model.audio_linear.in_features == 2 * LATENT16
    calls = []
    handle = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = generate(model, [model.prefix(torch.tensor([1, 2, 3]))], [3],
                       GenerationConfig(max_frames=10, stop_probability=1.0), seeded_generators([0]))[0]
    finally:
        handle.remove()
    assert out.shape == (10, LATENT16)
    assert len(calls) == 1 + 10 // 2  # one pass over the prefix, then one LM step per 2 frames
    step = model.head.predict(torch.randn(3, 64), GenerationConfig(), 3)
    assert model.head.sample(step, torch.randn(3, 2, LATENT16), 1.0).shape == (3, 2, LATENT16)
    # a prompt is read in whole steps: an odd prompt drops its first frame
    assert model.prefix(torch.tensor([1]), prompt_latents=torch.randn(5, LATENT16)).shape[0] == 1 + 2 + 2


# ---------------------------------------------------------------- the ESPnet model
@pytest.mark.parametrize("head,conf", [("melle", dict(reduction_factor=2)), ("energy_distance", {}),
                                       ("gaussian_mixture", {})])
def test_kalle_tts_model_trains_and_infers_with_each_head(head, conf):
    torch.manual_seed(0)
    model = KallE(idim=30, odim=2 * 8, latent_dim=8, head=head, head_conf=conf,
                  lm_conf=dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
                  generation_conf=dict(max_frames=6))
    feats = torch.cat([torch.randn(2, 5, 8), torch.full((2, 5, 8), -1.0)], dim=-1)
    loss, stats, weight = model(torch.tensor([[3, 4, 5], [6, 7, -1]]), torch.tensor([3, 2]), feats,
                                torch.tensor([5, 3]))
    assert torch.isfinite(loss).all() and int(weight) == 2 and "kl_speaker" in stats
    loss.sum().backward()
    assert model.lm.head.stop_linear.weight.grad.abs().sum() > 0
    out = model.eval().inference(torch.tensor([3, 4, 5]), decode_wav=False)
    assert out["feat_gen"].shape[1] == 8 and 0 <= out["feat_gen"].shape[0] <= 6 + 1
