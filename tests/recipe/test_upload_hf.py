"""Stage 10 (espnet_kalle.recipe.upload_hf): the staged upload folder and its model card, without a network."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import recipe_env

from espnet_kalle.recipe import upload_hf
from espnet_kalle.synthesizer import KalleSynthesizer

RESULTS = "# RESULTS mini test\n\n|system|WER (%)|SIM|\n|---|---|---|\n|clone|12.5|0.801|\n"


def data_dir(root: Path, name: str, n: int, speakers: int) -> Path:
    d = root / "dump/raw" / name
    d.mkdir(parents=True)
    utts = [f"u{i:02d}" for i in range(n)]
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} spk{i % speakers}\n" for i, u in enumerate(utts)))
    (d / "utt2num_samples").write_text("".join(f"{u} 576000\n" for u in utts))  # 36 s each at 16 kHz
    return d


@pytest.fixture
def recipe_outputs(tmp_path, tiny_model_dir):
    """What stages 2-9 leave for stage 10: data dirs, a packed model, scores of one test set, run.sh files."""
    dirs = [data_dir(tmp_path, "train", 100, 4), data_dir(tmp_path, "dev", 10, 4), data_dir(tmp_path, "test", 5, 2)]
    decode = tmp_path / "exp/lm_x/decode_latest"
    (decode / "test/scoring").mkdir(parents=True)
    (decode / "test/scoring/RESULTS.md").write_text(RESULTS)
    command = tmp_path / "exp/lm_x/run.sh"
    command.write_text("#!/usr/bin/env bash\n./kalle.sh --dataset mini --lm_config conf/train_kalle.yaml --stage 6\n")
    args = ["--model_dir", str(tiny_model_dir), "--out", str(tmp_path / "exp/hf_me_kalle"), "--repo", "me/kalle",
            "--dataset", "mini", "--data_dirs", *map(str, dirs), "--results_dir", str(decode),
            "--test_sets", "test", "eval", "--command_file", str(command)]
    return tmp_path, args


def test_dry_run_stages_a_loadable_model_with_its_card(recipe_outputs, tiny_model_dir):
    root, args = recipe_outputs
    assert upload_hf.main([*args, "--dry_run"]) == 0
    staged = root / "exp/hf_me_kalle"
    for rel in ("model.yaml", "lm/model.pth", "codec/config.yaml", "README.md"):
        assert (staged / rel).is_file(), rel
    assert len(list((staged / "voices").glob("*.voice.pt"))) == len(list((tiny_model_dir / "voices").glob("*.pt")))
    card = (staged / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["language"] == "en" and header["datasets"] == ["mini"] and header["license"] == "cc-by-4.0"
    assert {"espnet", "text-to-speech"} <= set(header["tags"]) and header["pipeline_tag"] == "text-to-speech"
    assert 'snapshot_download("me/kalle")' in card
    assert "|train|100|4|1.0|" in card and "|dev|10|4|0.1|" in card and "|test|5|2|0.05|" in card
    assert "|clone|12.5|0.801|" in card and "# RESULTS mini test" not in card  # its table, under our heading
    assert "`eval`: not scored" in card
    assert "./kalle.sh --dataset mini --lm_config conf/train_kalle.yaml --stage 6" in card
    assert (tiny_model_dir / "lm/config.yaml").read_text().strip() in card  # the LM config, as packed
    assert KalleSynthesizer.from_pretrained(staged).voices  # what users get from snapshot_download

    # Staged again from scratch: nothing stale is uploaded
    (staged / "stale.txt").write_text("x")
    assert upload_hf.main([*args, "--dry_run", "--license", "apache-2.0"]) == 0
    assert not (staged / "stale.txt").exists()
    assert yaml.safe_load((staged / "README.md").read_text().split("---\n")[1])["license"] == "apache-2.0"


def test_card_language_comes_from_model_yaml(recipe_outputs, tiny_model_dir, tmp_path):
    import shutil

    root, args = recipe_outputs
    model = tmp_path / "model_pt"
    shutil.copytree(tiny_model_dir, model)
    meta = yaml.safe_load((model / "model.yaml").read_text())
    (model / "model.yaml").write_text(yaml.safe_dump({**meta, "lang": "pt_BR"}))
    args[args.index("--model_dir") + 1] = str(model)
    assert upload_hf.main([*args, "--dry_run"]) == 0
    card = (root / "exp/hf_me_kalle/README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["language"] == "pt" and "(language `pt_BR`)" in card


def test_bad_input_fails_clearly(recipe_outputs, tmp_path):
    root, args = recipe_outputs
    for change, message in ((("--repo", "kalle"), "--repo must be <user or org>/<name>"),
                            (("--model_dir", str(tmp_path)), "is not a packed model dir"),
                            (("--data_dirs", str(tmp_path / "nope")), "wav.scp not found")):
        bad = list(args)
        bad[bad.index(change[0]) + 1] = change[1]
        with pytest.raises(SystemExit, match=message):
            upload_hf.main([*bad, "--dry_run"])
    assert not (root / "exp/hf_me_kalle").exists()


def test_without_dry_run_it_uploads_through_huggingface_hub(recipe_outputs):
    """Offline (HF_HUB_OFFLINE=1) huggingface_hub itself refuses the request: proof that the push goes through it
    (a placeholder token gets it past the login check to the request); the error is one line and the staged
    folder is kept for the next try."""
    root, args = recipe_outputs
    env = recipe_env({"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_real_token"})
    out = subprocess.run([sys.executable, "-m", "espnet_kalle.recipe.upload_hf", *args], env=env, cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "upload_hf: uploading" in out.stderr and "to me/kalle failed: OfflineModeIsEnabled" in out.stderr
    assert "Traceback" not in out.stderr
    assert (root / "exp/hf_me_kalle/README.md").is_file() and "staged" in out.stdout
