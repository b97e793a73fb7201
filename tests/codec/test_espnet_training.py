"""Real ESPnet runs of the Flow-VAE codec: collect_stats, GAN training via the stock
``espnet2.bin.gan_codec_train`` (through ``python -m espnet_kalle.run``), reloading, ESPnet inference.

The corpus is synthetic but speech-like (harmonic tones with gliding f0 and amplitude modulation, plus noise
bursts), 1-2 s at 16 kHz in a Kaldi-style data dir. Each ESPnet process pays ~15-20 s of imports on 2 cores.
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_kalle.codec.load import load_flow_vae
from espnet_kalle.codec.losses import MelSpectrogramLoss

CONF = Path(__file__).resolve().parents[1] / "conf"
SR = 16000


def write_corpus(root: Path, n: int = 6) -> None:
    """utt0..utt{n-1}: 1.0, 1.2, ... s; the first n - 2 in data/train, the rest in data/valid."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    scp = {"train": [], "valid": []}
    for i in range(n):
        t = np.arange(int(SR * (1.0 + 0.2 * (i % 4)))) / SR
        f0 = 100 + 35 * i + 25 * np.sin(2 * np.pi * (1 + 0.3 * i) * t)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k**1.2 for k in range(1, 8))
        x = x * (0.5 + 0.5 * np.sin(2 * np.pi * (2 + 0.5 * i) * t) ** 2)
        start = int(rng.integers(0, len(t) - 2400))
        x[start : start + 2400] += 0.5 * rng.standard_normal(2400)
        x = (0.7 * x / np.abs(x).max()).astype(np.float32)
        path = root / "wav" / f"utt{i}.wav"
        sf.write(path, x, SR, subtype="PCM_16")
        scp["train" if i < n - 2 else "valid"].append(f"utt{i} {path}\n")
    for name, lines in scp.items():
        (root / "data" / name).mkdir(parents=True)
        (root / "data" / name / "wav.scp").write_text("".join(lines))


def gan_codec_train(cwd: Path, *args: str, timeout: int = 300) -> str:
    """Run the stock trainer through our registering wrapper; return its log (stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "espnet_kalle.run", "-m", "espnet2.bin.gan_codec_train", "--ngpu", "0", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{log[-4000:]}"
    return log


def data_args(split_train: str = "train", split_valid: str = "valid"):
    return [
        "--train_data_path_and_name_and_type", f"data/{split_train}/wav.scp,audio,sound",
        "--valid_data_path_and_name_and_type", f"data/{split_valid}/wav.scp,audio,sound",
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Data dir + ESPnet's collect_stats stage (writes the shape files the trainer's samplers need)."""
    root = tmp_path_factory.mktemp("flowvae_corpus")
    write_corpus(root)
    gan_codec_train(
        root, "--collect_stats", "true", "--config", str(CONF / "flowvae_tiny_istft.yaml"), *data_args(),
        "--train_shape_file", "data/train/wav.scp", "--valid_shape_file", "data/valid/wav.scp",
        "--output_dir", "exp/stats",
    )
    shapes = (root / "exp/stats/train/audio_shape").read_text().split()
    assert shapes[:2] == ["utt0", str(SR)]
    return root


def shape_args():
    return ["--train_shape_file", "exp/stats/train/audio_shape", "--valid_shape_file", "exp/stats/valid/audio_shape"]


def epoch_stats(log: str, split: str = "train"):
    """{epoch: {stat: value}} from the trainer's 'Nepoch results: [train] ... [valid] ...' lines."""
    out = {}
    for epoch, train, valid in re.findall(r"(\d+)epoch results: \[train\] (.*?)\[valid\] (.*?)$", log, re.M):
        text = train if split == "train" else valid
        out[int(epoch)] = {k: float(v) for k, v in re.findall(r"([A-Za-z_][A-Za-z_0-9]*)=([-+0-9.e]+|nan)", text)}
    return out


def iteration_stat(log: str, name: str):
    """Per-iteration values logged with log_interval 1 ('Nepoch:train:i-ibatch: ... name=value').

    ESPnet's reporter sometimes drops the ", " between entries ("...=0.090mel_loss=3.0"): no \\b before the name.
    """
    return [float(v) for v in re.findall(rf"epoch:train:\d+-\d+batch: .*?(?<![A-Za-z_]){name}=([-+0-9.e]+)", log)]


def reconstruction_error(model, wav: torch.Tensor) -> float:
    with torch.no_grad():
        mu, _ = model.encode(wav)
        return MelSpectrogramLoss()(model.decode(mu)[..., : wav.shape[-1]], wav).item()


def load_wav(path: Path) -> torch.Tensor:
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return torch.from_numpy(x).view(1, 1, -1)


def test_training_decreases_mel_loss_then_reload_and_espnet_inference(corpus):
    """Fixed batch (all 4 train wavs, whole, zero padded), reconstruction only (warm-up covers the run)."""
    exp = corpus / "exp/istft"
    log = gan_codec_train(
        corpus, "--config", str(CONF / "flowvae_tiny_istft.yaml"), *data_args(), *shape_args(),
        "--output_dir", str(exp), "--batch_size", "4", "--max_epoch", "2", "--num_iters_per_epoch", "10",
        "--codec_conf", "segment_length=null", "--use_matplotlib", "false",
    )
    mel = iteration_stat(log, "mel_loss")
    assert len(mel) == 20, log[-3000:]
    epochs = epoch_stats(log)
    assert sorted(epochs) == [1, 2]
    assert epochs[2]["mel_loss"] < epochs[1]["mel_loss"], epochs
    assert np.mean(mel[-3:]) < 0.9 * np.mean(mel[:3]), mel
    assert all(math.isnan(e.get("adv_loss", math.nan)) for e in epochs.values())  # warm-up: no GAN terms yet
    assert math.isfinite(epoch_stats(log, "valid")[2]["mel_loss"])

    # reload the trained generator without ESPnet and check it is the trained one (better than a fresh init)
    config, model_file = exp / "config.yaml", exp / "latest.pth"
    trained = load_flow_vae(config, model_file)
    wav = load_wav(corpus / "wav/utt1.wav")
    mu, log_sigma = trained.encode(wav)
    frames = math.ceil(wav.shape[-1] / 1280)
    assert mu.shape == log_sigma.shape == (1, 8, frames)
    torch.manual_seed(0)
    fresh = type(trained)(**_generator_params(config)).eval()
    assert reconstruction_error(trained, wav) < reconstruction_error(fresh, wav)

    # the stock ESPnet inference class drives our encode/decode (codes = mu | log_sigma, resynthesis from mu)
    from espnet2.bin.gan_codec_inference import AudioCoding

    from espnet_kalle import register

    register(["gan_codec"])
    coding = AudioCoding(train_config=config, model_file=model_file)
    assert coding.fs == SR
    out = coding(wav.view(-1))
    assert out["codes"].shape == (1, 16, frames)
    assert torch.allclose(out["codes"][:, :8], mu, atol=1e-5)
    with torch.no_grad():
        expected = trained.decode(mu).view(-1)
    assert out["resyn_audio"].shape == expected.shape
    assert torch.allclose(out["resyn_audio"], expected, atol=1e-5)


def _generator_params(config: Path):
    import yaml

    from espnet_kalle.codec.load import generator_kwargs

    return generator_kwargs(yaml.safe_load(config.read_text())["codec_conf"])


def test_gan_training_bigvgan_segments_and_reload(corpus):
    """BigVGAN head, GAN terms from step 0, random 0.5 s segments of a padded batch; discriminator turn first."""
    exp = corpus / "exp/bigvgan"
    log = gan_codec_train(
        corpus, "--config", str(CONF / "flowvae_tiny_bigvgan.yaml"), *data_args(), *shape_args(),
        "--output_dir", str(exp),
    )
    train = epoch_stats(log)[1]
    for key in ("discriminator_loss", "real_loss", "fake_loss", "mel_loss", "kl_loss", "adv_loss", "feat_match_loss"):
        assert math.isfinite(train[key]), (key, train)
    assert math.isfinite(epoch_stats(log, "valid")[1]["discriminator_loss"])
    assert (exp / "valid.mel_loss.best.pth").exists()

    model = load_flow_vae(exp / "config.yaml", exp / "valid.mel_loss.best.pth")
    assert model.decoder_type == "bigvgan" and model.latent_dim == 16 and model.hop_length == 1280
    wav = load_wav(corpus / "wav/utt4.wav")
    with torch.no_grad():
        mu, _ = model.encode(wav)
        out = model.decode(mu)
    assert out.shape == (1, 1, mu.shape[-1] * 1280) and torch.isfinite(out).all()
