"""kalle-extract-latents run as a console script on a tiny random Flow-VAE saved as an ESPnet codec experiment."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_kalle.codec.flow_vae import FlowVAE
from espnet_kalle.codec.load import load_flow_vae

TINY = dict(
    latent_dim=8,
    downsample_channels=(4, 4, 4, 4, 4, 4, 8),
    residual_dilations=(1,),
    flow_hidden_channels=16,
    flow_layers=2,
    flow_couplings=2,
    decoder_type="istft",
    decoder_conf=dict(dim=32, intermediate_dim=64, num_layers=1),
)
WIDTH = 2 * TINY["latent_dim"]
HOP = 1280
SCRIPT = shutil.which("kalle-extract-latents", path=str(Path(sys.executable).parent))


def make_codec_dir(path: Path, seed: int) -> Path:
    """What an ESPnet codec experiment leaves behind: config.yaml and a model file with codec.generator.* keys."""
    torch.manual_seed(seed)
    model = FlowVAE(**TINY)
    path.mkdir(parents=True)
    conf = {"codec": "flow_vae", "codec_conf": {"sampling_rate": 16000, "generator_params": TINY}}
    (path / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(conf))))
    state = {f"codec.generator.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, path / "valid.loss.best.pth")
    return path


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    assert SCRIPT, "console script kalle-extract-latents is not installed next to this python"
    return subprocess.run([SCRIPT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """wav.scp with 3 good files (16 kHz mono of 1 s and 1281 samples, 0.5 s of 48 kHz stereo), a corrupt and a
    missing one."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    sf.write(root / "a.wav", 0.3 * rng.standard_normal(16000).astype(np.float32), 16000, subtype="PCM_16")
    sf.write(root / "b.wav", 0.3 * rng.standard_normal(1281).astype(np.float32), 16000, subtype="PCM_16")
    sf.write(root / "c.wav", 0.3 * rng.standard_normal((24000, 2)).astype(np.float32), 48000)
    (root / "bad.wav").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    lines = ["a a.wav", f"b {root / 'b.wav'}", "bad bad.wav", "c c.wav", "gone gone.wav"]
    (root / "wav.scp").write_text("\n".join(lines) + "\n")
    codec = make_codec_dir(root / "exp" / "codec", seed=0)
    return root, codec


@pytest.fixture(scope="module")
def first_run(corpus):
    root, codec = corpus
    out = root / "dump" / "latents"
    proc = run(
        "--codec-config", codec / "config.yaml", "--codec-model", codec / "valid.loss.best.pth",
        "--wav-scp", "wav.scp", "--out-dir", out, cwd=root,
    )  # fmt: skip
    return root, codec, out, proc


EXPECTED_FRAMES = {"a": math.ceil(16000 / HOP), "b": math.ceil(1281 / HOP), "c": math.ceil(8000 / HOP)}


def test_shapes_and_index_files(first_run):
    root, _, out, proc = first_run
    assert EXPECTED_FRAMES == {"a": 13, "b": 2, "c": 7}
    for utt, frames in EXPECTED_FRAMES.items():
        arr = np.load(out / "data" / f"{utt}.npy")
        assert arr.shape == (frames, WIDTH) and arr.dtype == np.float32
    scp = [line.split() for line in (out / "feats.scp").read_text().splitlines()]
    assert [u for u, _ in scp] == ["a", "b", "c"]
    for utt, path in scp:
        assert Path(path).is_absolute() and Path(path) == (out / "data" / f"{utt}.npy").resolve()
    shapes = (out / "feats_shape").read_text().splitlines()
    assert shapes == [f"{u} {f},{WIDTH}" for u, f in EXPECTED_FRAMES.items()]
    info = json.loads((out / "latents_info.json").read_text())
    assert (info["dim"], info["hop_length"], info["sample_rate"]) == (WIDTH, HOP, 16000)


def test_values_are_mu_then_log_sigma(first_run):
    root, codec, out, _ = first_run
    model = load_flow_vae(codec / "config.yaml", codec / "valid.loss.best.pth")
    wav, _ = sf.read(root / "a.wav", dtype="float32")
    with torch.inference_mode():
        mu, log_sigma = model.encode(torch.from_numpy(wav)[None, None])
    expected = torch.cat([mu, log_sigma], dim=1)[0].T.numpy()
    np.testing.assert_allclose(np.load(out / "data" / "a.npy"), expected, atol=1e-5)


def test_bad_files_are_reported(first_run):
    _, _, out, proc = first_run
    assert proc.returncode == 2, proc.stderr  # bad input audio (errors.txt)
    lines = (out / "errors.txt").read_text().splitlines()
    assert lines[0].startswith("bad\tbad.wav\tunreadable or corrupt audio")
    assert lines[1] == "gone\tgone.wav\tfile not found"
    assert lines[-1] == "# 5 utterances: 3 extracted, 0 already done, 2 failed"
    assert "2 failed" in proc.stderr
    assert not (out / "data" / "bad.npy").exists()


def test_resume_skips_done_and_redoes_broken(first_run, tmp_path):
    root, codec, out, _ = first_run
    resumed = tmp_path / "latents"
    shutil.copytree(out, resumed)
    marker = np.full((EXPECTED_FRAMES["a"], WIDTH), 7.0, np.float32)
    np.save(resumed / "data" / "a.npy", marker)  # valid: must be kept as is
    (resumed / "data" / "b.npy").write_bytes(b"\x93NUMPY truncated")  # invalid: must be redone
    (root / "bad.wav").rename(root / "bad.wav.off")  # now drop the failing entries from the list
    try:
        (root / "wav2.scp").write_text("a a.wav\nb b.wav\nc c.wav\n")
        proc = run("--codec-dir", codec, "--wav-scp", "wav2.scp", "--out-dir", resumed, cwd=root)
    finally:
        (root / "bad.wav.off").rename(root / "bad.wav")
    assert proc.returncode == 0, proc.stderr
    assert "2 already done" in proc.stderr and "1 extracted" in proc.stderr
    np.testing.assert_array_equal(np.load(resumed / "data" / "a.npy"), marker)
    np.testing.assert_array_equal(np.load(resumed / "data" / "b.npy"), np.load(out / "data" / "b.npy"))
    assert not (resumed / "errors.txt").exists()
    assert not [p for p in (resumed / "data").iterdir() if p.name.endswith(".tmp")]


def test_batching_matches_single(first_run, tmp_path):
    root, codec, out, _ = first_run
    batched = tmp_path / "batched"
    proc = run(
        "--codec-dir", codec, "--wav-scp", "wav.scp", "--out-dir", batched, "--batch-size", "4", "--allow-errors",
        cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for utt in EXPECTED_FRAMES:
        single, together = np.load(out / "data" / f"{utt}.npy"), np.load(batched / "data" / f"{utt}.npy")
        np.testing.assert_allclose(together, single, atol=1e-5)
    assert len((batched / "errors.txt").read_text().splitlines()) == 3


def test_other_codec_is_refused(first_run, tmp_path):
    root, _, out, _ = first_run
    other = make_codec_dir(tmp_path / "other", seed=1)
    proc = run("--codec-dir", other, "--wav-scp", "wav.scp", "--out-dir", out, cwd=root)
    assert proc.returncode != 0
    assert "another codec" in proc.stderr and "--overwrite" in proc.stderr


def test_unloadable_codec_is_a_clear_error(corpus, tmp_path):
    root, codec = corpus
    broken = tmp_path / "broken"
    shutil.copytree(codec, broken)
    (broken / "valid.loss.best.pth").write_bytes(os.urandom(100))
    proc = run("--codec-dir", broken, "--wav-scp", "wav.scp", "--out-dir", tmp_path / "o", cwd=root)
    assert proc.returncode == 3  # model (codec) unreadable
    assert "cannot load the codec" in proc.stderr and "Traceback" not in proc.stderr


def test_speaker_mel_rows_carry_the_log_mel_of_their_80_ms(first_run, tmp_path):
    """The layout espnet_kalle.tts.kalle.KallE.split_feats reads back: [mu | log_sigma | k x n_mels frame-major]."""
    from espnet_kalle.lm.speaker import LogMelFrontend

    root, codec, plain, _ = first_run
    (root / "mel.scp").write_text("a a.wav\nb b.wav\n")
    out = tmp_path / "mel"
    proc = run("--codec-dir", codec, "--wav-scp", "mel.scp", "--out-dir", out, "--speaker-mel", "--batch-size", "2",
               cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    k, n_mels = HOP // 160, 80
    width = WIDTH + k * n_mels
    assert (out / "feats_shape").read_text().splitlines() == [f"a 13,{width}", f"b 2,{width}"]
    for utt in ("a", "b"):
        feats = np.load(out / "data" / f"{utt}.npy")
        frames = EXPECTED_FRAMES[utt]
        wav, _ = sf.read(root / f"{utt}.wav", dtype="float32")
        padded = torch.from_numpy(np.pad(wav, (0, frames * HOP - len(wav))))[None]
        logmel, _ = LogMelFrontend(n_mels=n_mels)(padded, normalize=False)  # [1, n_mels, frames * k + 1]
        expected = logmel[0, :, : frames * k].T.reshape(frames, k * n_mels).numpy()
        np.testing.assert_allclose(feats[:, WIDTH:], expected, atol=1e-4)
        np.testing.assert_allclose(feats[:, :WIDTH], np.load(plain / "data" / f"{utt}.npy"), atol=1e-5)

