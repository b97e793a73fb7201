"""Comparing the LM heads: the per-head recipe configs, local/compare_heads.sh's dry run and the results merge."""

import inspect
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import RECIPE, copy_recipe, recipe_env

from espnet_kalle.recipe import compare
from espnet_kalle.scoring.report import summarize, write_summary_json
from espnet_kalle.scoring.runner import COLUMNS, ScoreRun

TUNING = RECIPE / "conf" / "tuning"
HEADS = ("gaussian_kl", "melle", "energy_distance", "gaussian_mixture")
HEAD_ONLY = {"head", "head_conf", "lambda_end"}  # lambda_end weights gaussian_kl's end distribution only


def config_of(size: str, head: str) -> Path:
    return TUNING / (f"train_kalle_{size}.yaml" if head == "gaussian_kl" else f"train_kalle_{size}_{head}.yaml")


def without_head(conf: dict) -> dict:
    """The config minus what belongs to the head (its options, its stop rule)."""
    conf = dict(conf, tts_conf={k: v for k, v in conf["tts_conf"].items() if k not in HEAD_ONLY})
    gen = conf["tts_conf"].get("generation_conf", {})
    conf["tts_conf"]["generation_conf"] = {k: v for k, v in gen.items()
                                           if k not in ("stop_threshold", "stop_probability")}
    return conf


# ---------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("size", ["mini", "paper"])
@pytest.mark.parametrize("head", ["melle", "energy_distance", "gaussian_mixture"])
def test_head_configs_differ_from_their_base_only_in_the_head(size, head):
    """Equal footing: same backbone, speaker encoder, optimizer, batches and epochs as the gaussian_kl config."""
    base = yaml.safe_load(config_of(size, "gaussian_kl").read_text())
    conf = yaml.safe_load(config_of(size, head).read_text())
    assert conf["tts_conf"]["head"] == head and "head" not in base["tts_conf"]
    assert without_head(conf) == without_head(base)
    assert "stop_probability" in conf["tts_conf"]["generation_conf"]  # these heads stop with a classifier
    from espnet_kalle.lm.heads import HEADS as REGISTERED

    options = inspect.signature(REGISTERED[head]).parameters
    assert set(conf["tts_conf"]["head_conf"]) <= set(options)  # no option the head would reject


@pytest.mark.parametrize("head", ["melle", "energy_distance", "gaussian_mixture"])
def test_paper_head_configs_build_on_the_paper_backbone(head, monkeypatch):
    """The paper-size variants build (the 1B backbone on the meta device). Their ESPnet options are
    train_kalle_paper.yaml's (test above), which test_stage_driver parses with ESPnet's own parser."""
    import espnet_kalle.lm.model as lm_model
    from espnet_kalle.tts.kalle import KallE

    build = lm_model.build_llama

    def on_meta(*a, **kw):
        with torch.device("meta"):
            return build(*a, **kw)

    monkeypatch.setattr(lm_model, "build_llama", on_meta)
    tts_conf = yaml.safe_load(config_of("paper", head).read_text())["tts_conf"]
    lm = KallE(idim=40, odim=2 * 512 + 640, **tts_conf).lm
    assert lm.head_type == head and lm.backbone.config.hidden_size == 2048 and lm.frames_per_step == 1
    assert tuple(lm.audio_linear.weight.shape) == (2048, 512)


# -------------------------------------------------------------------------------------------------- dry run
def test_driver_dry_run_prints_one_stage_6_to_9_run_per_head(tmp_path):
    recipe = copy_recipe(tmp_path / "tts1")
    out = subprocess.run(["bash", "local/compare_heads.sh", "--dry_run", "true", "--lm_args", "--max_epoch 2"],
                         cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    runs = [shlex.split(line[2:]) for line in out.stderr.splitlines() if line.startswith("+ ./run.sh ")]
    assert len(runs) == len(HEADS)
    opts = [dict(zip(r[1::2], r[2::2])) for r in runs]
    for o in opts:
        assert (o["--stage"], o["--stop_stage"], o["--dry_run"], o["--lm_args"]) == ("6", "9", "true", "--max_epoch 2")
        assert o["--decode_config"] == "conf/decode_compare_heads.yaml"  # every head decodes the same systems
        assert o["--inference_tag"] == "compare_heads"  # into decoding dirs of the same name
    assert [o["--lm_config"] for o in opts] == [str(config_of("mini", h).relative_to(RECIPE)) for h in HEADS]
    tags = [o["--lm_tag"] for o in opts]
    assert len(set(tags)) == len(HEADS) and all(t.endswith(h) for t, h in zip(tags, HEADS))
    # each run.sh ran its own dry run: stages 6-9 into its own exp dir
    for tag in tags:
        assert re.search(rf"\) Stage 6: .* training -> exp/lm_{tag}\n", out.stderr)
        assert f"-> exp/lm_{tag}/compare_heads/test/scoring/RESULTS.md" in out.stderr
        assert (f"--out_dir exp/lm_{tag}/compare_heads/test --device cpu --config conf/decode_compare_heads.yaml"
                in out.stderr)
    merge = [line for line in out.stderr.splitlines() if "-m espnet_kalle.recipe.compare" in line]
    assert len(merge) == 1 and "--out exp/compare_heads/RESULTS.md --inference_tag compare_heads" in merge[0]
    assert all(f"--exp {h}=exp/lm_{t}" in merge[0] for h, t in zip(HEADS, tags))
    assert not (recipe / "exp").exists() and not (recipe / "dump").exists()  # a dry run writes nothing


def test_driver_refuses_to_train_without_latents_and_unknown_heads(tmp_path):
    recipe = copy_recipe(tmp_path / "tts1")
    for args, message in ((["--heads", "gaussian_kl flow"], "no config for head flow"),
                          ([], "run stages 1-5 first")):
        out = subprocess.run(["bash", "local/compare_heads.sh", *args], cwd=recipe, env=recipe_env(),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and message in out.stderr, out.stderr


# ---------------------------------------------------------------------------------------------------- merge
# Per head: (WER as error count of 4 words, SIM ref, MCD, DNSMOS OVRL, RTF, head parameters).
SCORES = {
    "gaussian_kl": (1, 0.80, 6.0, 2.80, 0.25, 10_000),
    "melle": (2, 0.70, 7.5, 2.50, 0.50, 20_000),
    "energy_distance": (0, 0.75, 6.5, 3.00, 0.20, 250_000),
    "gaussian_mixture": (1, 0.85, 5.5, 2.90, 0.25, 40_000),
}
BACKBONE = 1_000_000


def rows_of(system: str, errors: int, sim: float, mcd, dnsmos: float, rtf) -> list:
    rows = []
    for utt in ("a", "b"):
        row = {c: "" for c in COLUMNS}
        row.update(system=system, utt_id=utt, voice="slt", ref_speaker="slt", duration=2.0, ref_words=4,
                   hits=4 - errors, substitutions=errors, deletions=0, insertions=0, wer=errors / 4, sim_ref=sim,
                   sim_centroid=sim, dnsmos_ovrl=dnsmos)
        if mcd is not None:
            row.update(mcd=mcd, synth_seconds=rtf * 2.0, rtf=rtf)
        rows.append(row)
    return rows


def fake_experiment(exp: Path, head: str, scores: tuple, model_file: str) -> None:
    """What stages 6-9 leave behind, as far as the merge reads it: config.yaml, a model file, summary.json."""
    errors, sim, mcd, dnsmos, rtf, head_params = scores
    exp.mkdir(parents=True)
    tts_conf = {"lm_conf": {"hidden_size": 384}, **({} if head == "gaussian_kl" else {"head": head})}
    (exp / "config.yaml").write_text(yaml.safe_dump({"config": f"conf/{head}.yaml", "tts": "kalle",
                                                     "tts_conf": tts_conf}))
    state = {"tts.lm.backbone.weight": torch.zeros(BACKBONE), "tts.lm.head.weight": torch.zeros(head_params),
             "tts.speaker.encoder.weight": torch.zeros(5000)}  # the speaker encoder is not the LM
    (exp / model_file).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, exp / model_file)
    rows = (rows_of("reference", 0, 0.9, None, 3.2, None) + rows_of("clone", errors, sim, mcd, dnsmos, rtf)
            + rows_of("ttt", 3, 0.6, 9.0, 2.0, 1.0))
    run = ScoreRun(rows=rows, scorers={"wer": "pocketsphinx", "sim": "resemblyzer"})
    scoring = exp / "compare_heads" / "test" / "scoring"
    scoring.mkdir(parents=True)
    write_summary_json(scoring / "summary.json", run, *summarize(rows))


def test_merge_writes_the_side_by_side_table(tmp_path):
    model_files = ("packed_latest/lm/model.pth", "packed_3epoch/lm/model.pth", "latest.pth", "latest.pth")
    for head, model_file in zip(HEADS, model_files):
        fake_experiment(tmp_path / f"exp/lm_heads_mini_{head}", head, SCORES[head], model_file)
    out = tmp_path / "exp/compare_heads/RESULTS.md"
    assert compare.main([*(a for h in HEADS for a in ("--exp", f"{h}={tmp_path}/exp/lm_heads_mini_{h}")),
                         "--inference_tag", "compare_heads", "--test_sets", "test", "--out", str(out)]) == 0
    text = out.read_text()
    main = text.split("## test: system `clone`\n\n")[1].split("\n\n")[0]
    assert main == "\n".join([
        "|head|WER (%)|SIM|MCD (dB)|DNSMOS|RTF|parameters|head parameters|",
        "|---|---|---|---|---|---|---|---|",
        "|gaussian_kl|25.0|0.800|6.00|2.80|0.250|1.01 M|0.01 M|",
        "|melle|50.0|0.700|7.50|2.50|0.500|1.02 M|0.02 M|",
        "|energy_distance|0.0|0.750|6.50|3.00|0.200|1.25 M|0.25 M|",
        "|gaussian_mixture|25.0|0.850|5.50|2.90|0.250|1.04 M|0.04 M|",
        "|reference (ceiling)|0.0|0.900|-|3.20|-|-|-|",
    ])
    every = text.split("### test: every decode system\n\n")[1]
    assert "|melle|ttt|2|75.0|0.600|9.00|2.00|1.000|" in every and "|reference|" not in every
    assert "head `melle`, config `conf/melle.yaml`" in text and "### Notes" not in text
    summary = json.loads(out.with_name("summary.json").read_text())
    melle = summary["experiments"]["melle"]
    assert melle["parameters"] == BACKBONE + 20_000 and melle["head_parameters"] == 20_000
    assert melle["test_sets"]["test"] == {"wer": 0.5, "sim_ref": 0.7, "mcd": 7.5, "dnsmos_ovrl": 2.5, "rtf": 0.5}


def test_merge_shows_what_is_missing_or_unequal(tmp_path):
    fake_experiment(tmp_path / "lm_a", "gaussian_kl", SCORES["gaussian_kl"], "packed_latest/lm/model.pth")
    (tmp_path / "lm_b").mkdir()  # trained nothing yet
    config = yaml.safe_load((tmp_path / "lm_a/config.yaml").read_text())
    config["tts_conf"]["lm_conf"]["hidden_size"] = 512
    (tmp_path / "lm_b/config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "cmp/RESULTS.md"
    compare.main(["--exp", f"a={tmp_path}/lm_a", "--exp", str(tmp_path / "lm_b"), "--inference_tag", "compare_heads",
                  "--out", str(out)])
    text = out.read_text()
    assert "|b|-|-|-|-|-|-|-|" in text
    assert "different backbones" in text and "b has no scoring results" in text and "b: no model file" in text


def test_comparison_decodes_the_clone_system_with_the_full_decodes_options():
    from espnet_kalle.recipe.decode import load_config

    compare_conf = load_config(RECIPE / "conf" / "decode_compare_heads.yaml")
    full = load_config(RECIPE / "conf" / "decode.yaml")
    assert compare_conf["systems"] == {"presets": 0, "clone": True, "ttt": False, "resynth": False}
    assert compare_conf["synthesize"] == full["synthesize"]  # same sampling as the main decode
    assert compare_conf["clone"] == full["clone"]  # and the same cloning
