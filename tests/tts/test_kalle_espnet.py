"""The "kalle" model inside ESPnet: stock tts_train (collect_stats + training) on npy latents through
``python -m espnet_kalle.run``, then stock ``Text2Speech`` returning a waveform through the model's Flow-VAE."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from model_factory import LATENT, write_tiny_codec

MEL = 8 * 80  # 8 log-mel frames of 80 bins per 80 ms latent frame
TEXTS = ["hello world.", "a cat sat.", "speech is fun!", "we test kalle.", "one two three.", "good day."]
TOKENS = ["<blank>", "<unk>"] + sorted(set("".join(TEXTS))) + ["<sos/eos>"]
EPOCHS = 8  # of 2 steps each: enough for the loss to fall well clear of its noise
CHECKPOINT = f"{EPOCHS}epoch.pth"


def write_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, texts in (("train", TEXTS[:4]), ("valid", TEXTS[4:])):
        d = root / "dump" / split
        (d / "feats").mkdir(parents=True)
        text_lines, scp_lines = [], []
        for i, sentence in enumerate(texts):
            utt = f"{split}{i}"
            frames = 5 + 2 * i
            feats = np.concatenate([rng.normal(size=(frames, LATENT)), np.full((frames, LATENT), -1.0),
                                    rng.normal(size=(frames, MEL)) - 5], axis=1).astype(np.float32)
            np.save(d / "feats" / f"{utt}.npy", feats)
            text_lines.append(f"{utt} {sentence}\n")
            scp_lines.append(f"{utt} {d / 'feats' / (utt + '.npy')}\n")
        (d / "text").write_text("".join(text_lines))
        (d / "feats.scp").write_text("".join(scp_lines))
    (root / "tokens.txt").write_text("\n".join(t if t != " " else "<space>" for t in TOKENS) + "\n")


def tts_config(root: Path, codec_config: Path, codec_model: Path) -> Path:
    conf = {
        "tts": "kalle",
        "tts_conf": {
            "latent_dim": LATENT,
            "lm_conf": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
                        "max_position_embeddings": 512},
            "speaker_conf": {"speaker_dim": 4, "channels": 16, "embed_dim": 8, "scale": 4, "se_channels": 8,
                             "attention_channels": 8, "segment_seconds": 0.5},
            "text_dropout": 0.1,
            "codec_config": str(codec_config),
            "codec_file": str(codec_model),
            "generation_conf": {"max_frames": 20},
        },
        "normalize": None,
        "optim": "adam",
        "optim_conf": {"lr": 0.003},
        "batch_type": "unsorted",
        "batch_size": 2,
        "max_epoch": EPOCHS,
        "num_workers": 0,
        "use_tensorboard": False,
        "best_model_criterion": [["valid", "loss", "min"]],
        "keep_nbest_models": 1,
        "seed": 0,
    }
    path = root / "train_kalle.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def run_tts_train(root: Path, config: Path, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable, "-m", "espnet_kalle.run", "-m", "espnet2.bin.tts_train", "--config", str(config),
        "--ngpu", "0", "--token_type", "char", "--token_list", str(root / "tokens.txt"), "--cleaner", "none",
        "--g2p", "none", "--odim", str(2 * LATENT + MEL), *args,
    ]
    for split, prefix in (("train", "train"), ("valid", "valid")):
        d = root / "dump" / split
        cmd += [f"--{prefix}_data_path_and_name_and_type", f"{d / 'text'},text,text",
                f"--{prefix}_data_path_and_name_and_type", f"{d / 'feats.scp'},speech,npy"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("kalle")
    codec_config, codec_model = write_tiny_codec(root)
    write_data(root)
    config = tts_config(root, codec_config, codec_model)
    stats = root / "exp" / "stats"
    run_tts_train(root, config, "--collect_stats", "true", "--output_dir", str(stats),
                  "--train_shape_file", str(root / "dump/train/feats.scp"),
                  "--valid_shape_file", str(root / "dump/valid/feats.scp"))
    exp = root / "exp" / "kalle"
    log = run_tts_train(root, config, "--output_dir", str(exp),
                        "--train_shape_file", str(stats / "train/text_shape"),
                        "--train_shape_file", str(stats / "train/speech_shape"),
                        "--valid_shape_file", str(stats / "valid/text_shape"),
                        "--valid_shape_file", str(stats / "valid/speech_shape"))
    return root, exp, log


def epoch_losses(log: str, split: str) -> list[float]:
    """The ``loss`` ESPnet's trainer reports for ``split`` at the end of each epoch, in order."""
    pattern = re.compile(rf"(\d+)epoch results: .*?\[{split}\][^\[]*? loss=([-\d.e+]+)")
    found = [(int(m.group(1)), float(m.group(2))) for m in map(pattern.search, log.splitlines()) if m]
    assert [epoch for epoch, _ in found] == list(range(1, EPOCHS + 1)), found
    return [loss for _, loss in found]


def test_training_lowers_the_loss_and_reports_each_term(trained):
    _, exp, log = trained
    assert (exp / CHECKPOINT).is_file()
    for term in ("kl_frame", "kl_end", "kl_speaker", "loss"):
        assert f"{term}=" in log, term
    train, valid = epoch_losses(log, "train"), epoch_losses(log, "valid")
    assert train[-1] < 0.6 * train[0], train  # the model learns its training data
    assert min(valid[-3:]) < 0.8 * valid[0], valid  # and what it learns carries over to held-out utterances


def test_text2speech_loads_and_returns_a_waveform(trained):
    import espnet_kalle

    espnet_kalle.register()
    from espnet2.bin.tts_inference import Text2Speech

    root, exp, _ = trained
    tts = Text2Speech(train_config=exp / "config.yaml", model_file=exp / CHECKPOINT, device="cpu")
    assert tts.fs == 16000
    out = tts("hello world.", decode_conf={"seed": 3})
    frames = out["feat_gen"].shape[0]
    assert out["feat_gen"].shape[1] == LATENT and 1 <= frames <= 20
    assert out["wav"].shape == (frames * 1280,)
    assert torch.isfinite(out["wav"]).all()
    again = tts("hello world.", decode_conf={"seed": 3})
    torch.testing.assert_close(again["wav"], out["wav"])
    other = tts("hello world.", decode_conf={"seed": 4})
    assert not torch.equal(other["feat_gen"][:1], out["feat_gen"][:1])


def test_checkpoint_has_no_missing_keys(trained):
    """ESPnet loads with strict=False: make sure every parameter of the model is in the checkpoint."""
    import espnet_kalle

    espnet_kalle.register()
    from espnet2.tasks.tts import TTSTask

    _, exp, _ = trained
    model, _ = TTSTask.build_model_from_file(exp / "config.yaml", None, "cpu")
    state = torch.load(exp / CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)


def test_guided_attention_trains_on_the_recipes_durations_inside_espnet(trained):
    """The recipe's durations file (from phone timings, one count per token of ESPnet's own text_shape) reaches the
    model as ESPnet's optional 'durations' and the guided heads' cost is trained and reported."""
    from espnet_kalle.recipe.token_durations import main as write_durations

    root, _, _ = trained
    stats = root / "exp" / "stats"
    shapes = {line.split()[0]: int(line.split()[1].split(",")[0])
              for line in (stats / "train/speech_shape").read_text().splitlines()}
    (root / "utt2num_samples").write_text("".join(f"{u} {t * 1280}\n" for u, t in shapes.items()))
    (root / "phone_timings").write_text("train0 pau:0.1 hh:0.2 ax:0.3 l:0.4 ow:0.5 pau:0.6\n")  # others: diagonal
    assert write_durations(["--timings", str(root / "phone_timings"), "--text_shape", str(stats / "train/text_shape"),
                            "--speech_shape", str(stats / "train/speech_shape"),
                            "--utt2num_samples", str(root / "utt2num_samples"),
                            "--out", str(root / "durations")]) == 0
    config = yaml.safe_load((root / "train_kalle.yaml").read_text())
    config["tts_conf"]["guided_attention"] = {"layers": [1], "heads": [0], "target": "durations"}
    config["max_epoch"] = 1
    (root / "train_guided.yaml").write_text(yaml.safe_dump(config))
    exp = root / "exp" / "guided"
    log = run_tts_train(root, root / "train_guided.yaml", "--output_dir", str(exp),
                        "--train_data_path_and_name_and_type", f"{root / 'durations'},durations,text_int",
                        "--train_shape_file", str(stats / "train/text_shape"),
                        "--train_shape_file", str(stats / "train/speech_shape"),
                        "--valid_shape_file", str(stats / "valid/text_shape"),
                        "--valid_shape_file", str(stats / "valid/speech_shape"))
    costs = [float(x) for x in re.findall(r"\[train\].*?guided_attention=([-\d.e+]+)", log)]
    assert costs and all(0 < c < 1 for c in costs), log[-2000:]
    assert (exp / "1epoch.pth").is_file()
