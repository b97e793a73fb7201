"""The free-running probe end to end: a tiny packed model (and its ESPnet files) on pieces of a real recording."""

import json

import numpy as np
import pytest
import soundfile as sf

from espnet_kalle.kaldi_io import read_kaldi_map
from espnet_kalle.recipe.probe_freerun import load_for_probe, main, markdown, probe


@pytest.fixture
def data_dir(prompt_halves_dir):
    return prompt_halves_dir


def texts(data_dir):
    return list(read_kaldi_map(data_dir / "text").values())


class ScriptedASR:
    """Hears every system's audio and answers from a script: the reference for each utterance's first system
    (resynthesis), words that match nothing for the others."""

    name = "scripted"

    def __init__(self, systems: int, references):
        self.heard, self.systems, self.references = [], systems, references

    def transcribe(self, wav, sample_rate):
        self.heard.append(np.asarray(wav).copy())
        utt, system = divmod(len(self.heard) - 1, self.systems)
        return self.references[utt] if system == 0 else "nothing alike"


def test_probe_scores_every_system_on_its_own_audio(tiny_model_dir, data_dir):
    synth = load_for_probe(str(tiny_model_dir))
    sizes = {u: sf.info(str(data_dir / f"{u}.wav")).frames for u in ("a-1", "b-1")}
    asr = ScriptedASR(systems=4, references=texts(data_dir))
    result = probe(synth, data_dir, asr, num_utts=2, temperatures=["shipped", "0"])
    assert list(result) == ["resynthesis", "teacher-forced", "free t=1", "free t=0"]  # the tiny model ships 1.0
    assert result["resynthesis"]["wer"] == 0.0 and result["teacher-forced"]["wer"] == 100.0
    assert result["resynthesis"]["length_ratio"] == pytest.approx(1.0, abs=1e-3)
    hop = synth.hop_length
    frames = [int(np.ceil(n / hop)) for n in sizes.values()]
    # teacher forcing predicts one frame per true frame; the random LM never stops, so free runs hit max_frames
    assert result["teacher-forced"]["length_ratio"] == pytest.approx(
        np.mean([f * hop / n for f, n in zip(frames, sizes.values())]), rel=0.02)
    for free in ("free t=1", "free t=0"):
        assert result[free]["unstopped"] == 1.0 and result[free]["sentences"] == 2
    first = asr.heard[:4]  # one utterance: resynthesis, teacher-forced, t=1, t=0 are four different signals
    assert not np.allclose(first[2], first[3]) and not np.allclose(first[1][: first[0].size], first[0])
    assert "| free t=0 |" in markdown(result, asr.name)


def test_cli_scores_an_espnet_checkpoint_and_repeats_itself(tiny_model_dir, data_dir, tmp_path, capsys):
    root = tiny_model_dir.parent  # the ESPnet-style files the tiny model dir was packed from
    args = ["--lm_config", str(root / "kalle_config.yaml"), "--lm_model", str(root / "kalle.pth"),
            "--codec_config", str(root / "codec_config.yaml"), "--codec_model", str(root / "codec.pth"),
            "--data_dir", str(data_dir), "--num_utts", "1", "--temperatures", "0.5"]
    out = tmp_path / "probe.json"
    assert main(args + ["--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result) == ["resynthesis", "teacher-forced", "free t=0.5"] and result["free t=0.5"]["sentences"] == 1
    assert "| teacher-forced |" in capsys.readouterr().out
    assert main(args + ["--out", str(out)]) == 0
    assert json.loads(out.read_text()) == result  # same seed, same draws, same scores


def test_cli_refuses_missing_data_and_half_a_checkpoint(tiny_model_dir, tmp_path, capsys):
    assert main(["--model_dir", str(tiny_model_dir), "--data_dir", str(tmp_path)]) == 2
    assert "text: not found" in capsys.readouterr().err
    (tmp_path / "text").write_text("u hi\n")
    (tmp_path / "wav.scp").write_text("u /nonexistent.wav\n")
    assert main(["--lm_config", "x.yaml", "--data_dir", str(tmp_path)]) == 2
    assert "give --model_dir" in capsys.readouterr().err


def voices_used(synth, data_dir, voice):
    """The voice each free run of ``probe`` synthesized with (the real synthesizer, watched)."""
    used, synthesize = [], synth.synthesize

    def watch(text, voice=None, **kwargs):
        used.append((text, voice))
        return synthesize(text, voice=voice, **kwargs)

    synth.synthesize = watch
    probe(synth, data_dir, ScriptedASR(systems=3, references=texts(data_dir)), num_utts=2, temperatures=["0"],
          voice=voice)
    return used


def test_clone_continues_another_recording_of_the_speaker_and_prompted_its_own_prompt(tiny_model_dir, data_dir):
    from espnet_kalle.pretrained.presets import PROMPT_TEXT

    synth = load_for_probe(str(tiny_model_dir))
    with pytest.raises(ValueError, match="no other recording"):  # a-1 and b-1 are different speakers
        voices_used(synth, data_dir, "clone")
    (data_dir / "utt2spk").write_text("a-1 a\nb-1 a\n", encoding="utf-8")
    used = voices_used(synth, data_dir, "clone")
    text_a, text_b = texts(data_dir)
    assert [(text, v.prompt_text) for text, v in used] == [(text_a, text_b), (text_b, text_a)]
    assert all(v.prompt_latents is not None and v.prompt_latents.shape[0] > 5 for _, v in used)
    used = voices_used(synth, data_dir, "prompted:7")
    assert used[0][1] is used[1][1] and used[0][1].prompt_text == PROMPT_TEXT  # one voice, its own prompt
    assert used[0][1].prompt_latents is not None
    with pytest.raises(ValueError, match="integer seed"):
        voices_used(synth, data_dir, "prompted:x")
