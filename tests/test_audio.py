"""load_audio / save_audio / read_wav_scp on real files written with soundfile."""

import sys

import numpy as np
import pytest
import soundfile as sf

from espnet_kalle.audio import AudioError, load_audio, resample, save_audio
from espnet_kalle.kaldi_io import read_wav_scp


def dominant_frequency(wav: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sample_rate)[np.argmax(spectrum)])


def sine(freq: float, sample_rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found") as err:
        load_audio(path)
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="unreadable or corrupt") as err:
        load_audio(path)
    assert err.value.path == str(path)


def test_truncated_header(tmp_path):
    src = tmp_path / "ok.wav"
    sf.write(src, sine(440, 16000, 0.1), 16000)
    path = tmp_path / "truncated.wav"
    path.write_bytes(src.read_bytes()[:20])
    with pytest.raises(AudioError, match="unreadable or corrupt"):
        load_audio(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty audio \(0 samples\)"):
        load_audio(path)


def test_nan_is_refused(tmp_path):
    path = tmp_path / "nan.wav"
    wav = sine(440, 16000, 0.1)
    wav[10] = np.nan
    sf.write(path, wav, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)


def test_int16_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "int16.wav"
    pcm = np.array([0, 16384, -32768, 32767, -8192], dtype=np.int16)
    sf.write(path, pcm, 16000, subtype="PCM_16")
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.shape == (5,)
    np.testing.assert_allclose(wav, [0.0, 0.5, -1.0, 32767 / 32768, -0.25], atol=1e-7)


def test_stereo_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = np.full(800, 0.5, np.float32), np.full(800, -0.1, np.float32)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav = load_audio(path)
    assert wav.shape == (800,)
    np.testing.assert_allclose(wav, 0.2, atol=1e-6)
    with pytest.raises(AudioError, match="2 channels"):
        load_audio(path, mono="error")


@pytest.mark.parametrize("orig_sr", [48000, 22050, 8000])
def test_other_rates_are_resampled(tmp_path, orig_sr):
    path = tmp_path / f"sine_{orig_sr}.wav"
    sf.write(path, sine(440, orig_sr, 1.0), orig_sr, subtype="PCM_16")
    wav = load_audio(path, sample_rate=16000)
    assert wav.shape == (16000,)
    assert abs(dominant_frequency(wav, 16000) - 440) < 2
    # amplitude survives (no gain change from resampling), away from the edges
    assert abs(np.abs(wav[1000:-1000]).max() - 0.5) < 0.02


def test_scipy_fallback_when_soxr_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "soxr", None)  # makes `import soxr` raise ImportError
    x = sine(1000, 48000, 0.5)
    y = resample(x, 48000, 16000)
    assert y.shape == (8000,) and y.dtype == np.float32
    assert abs(dominant_frequency(y, 16000) - 1000) < 3


def test_bad_mono_option(tmp_path):
    with pytest.raises(ValueError, match="mono"):
        load_audio(tmp_path / "x.wav", mono="left")


def test_save_audio_round_trip_and_clipping(tmp_path):
    path = tmp_path / "sub" / "out.wav"
    wav = np.array([0.0, 0.5, -0.5, 1.7, -3.0], dtype=np.float32)
    save_audio(path, wav, 16000)
    info = sf.info(path)
    assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", 5)
    np.testing.assert_allclose(load_audio(path), [0.0, 0.5, -0.5, 32767 / 32768, -1.0], atol=1e-4)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]  # no temporary file left behind


def test_save_audio_float_keeps_values(tmp_path):
    path = tmp_path / "float.wav"
    wav = sine(300, 16000, 0.2)
    save_audio(path, wav, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), wav)


def test_save_audio_replaces_existing_file(tmp_path):
    path = tmp_path / "x.wav"
    save_audio(path, np.zeros(10, np.float32), 16000)
    save_audio(path, np.full(20, 0.25, np.float32), 16000)
    assert load_audio(path).shape == (20,)


def test_read_wav_scp(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("utt1 /data/a.wav\n\nutt2 rel/dir/b.flac\nutt3 cat /data/c.wav |\n")
    expected = [("utt1", "/data/a.wav"), ("utt2", "rel/dir/b.flac"), ("utt3", "/data/c.wav")]
    assert list(read_wav_scp(scp).items()) == expected


def test_read_wav_scp_keeps_commands_for_the_formatting_stage(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("utt1 sox /data/a.flac -t wav - |\nutt2 cat /data/b.wav |\n")
    assert read_wav_scp(scp, commands=True) == {"utt1": "sox /data/a.flac -t wav - |", "utt2": "/data/b.wav"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("utt1 sox /data/a.flac -t wav - |", "pipe commands are not supported"),
        ("utt1 /data/feats.ark:1234", "ark offsets are not supported"),
        ("utt1", "expected 'utt_id path'"),
    ],
)
def test_read_wav_scp_refuses(tmp_path, line, message):
    scp = tmp_path / "wav.scp"
    scp.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_wav_scp(scp)


def test_read_wav_scp_duplicate_ids(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("utt1 a.wav\nutt1 b.wav\n")
    with pytest.raises(ValueError, match="duplicate key 'utt1'"):
        read_wav_scp(scp)
