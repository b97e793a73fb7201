"""KalleSynthesizer on packed model dirs: loading, voices, determinism, streaming, cloning, TTT, bad input."""

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from espnet_kalle.pretrained.presets import PROMPT_TEXT as PRESET_PROMPT_TEXT
from espnet_kalle.synthesizer import KalleSynthesizer
from espnet_kalle.text import TextError

from model_factory import STOP_FRAMES

PROMPT_TEXT = "one division of la force is called the court of saint bernard."


@pytest.fixture(scope="module")
def synth(tiny_model_dir):
    return KalleSynthesizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def prompt_wav():
    """Three seconds of a real recording (the start of human prompt 70), 16 kHz 16-bit."""
    return Path(__file__).resolve().parent / "data" / "prompt_70_3s.wav"


def test_loads_model_dir_with_voices(synth):
    assert synth.sample_rate == 16000 and synth.hop_length == 1280
    assert sorted(synth.voices) == ["high-1", "low-1", "mid-1"]
    assert synth.default_voice == "mid-1"
    for voice in synth.voices.values():
        assert voice.speaker.shape == (4,) and voice.kind == "preset" and "F0" in voice.description
        # each preset continues a prompt the model spoke itself from the preset's speaker latent
        torch.testing.assert_close(voice.speaker, synth.model.voice_from_seed(voice.seed), atol=0, rtol=0)
        assert voice.prompt_latents.ndim == 2 and voice.prompt_latents.shape[1] == 8
        assert voice.prompt_ids.tolist() == synth.tokenizer(PRESET_PROMPT_TEXT)


def test_synthesize_is_float32_mono_and_deterministic(synth):
    a = synth.synthesize("hello world.", voice="low-1", seed=1)
    assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0 and a.size % 1280 == 0
    np.testing.assert_array_equal(a, synth.synthesize("hello world.", voice="low-1", seed=1))
    assert not np.array_equal(a[:1280 * 3], synth.synthesize("hello world.", voice="high-1", seed=1)[:1280 * 3])


def test_seed_voices_are_repeatable_and_distinct(synth):
    torch.manual_seed(99)
    a, b, c = synth.voice(42), synth.voice(42), synth.voice(43)
    torch.testing.assert_close(a.speaker, b.speaker, atol=0, rtol=0)
    assert not torch.allclose(a.speaker, c.speaker)
    np.testing.assert_array_equal(synth.synthesize("hi.", voice=42), synth.synthesize("hi.", voice=42))


def test_stream_yields_80ms_chunks_equal_to_synthesize(synth, monkeypatch):
    """Same audio; synthesize, which returns nothing before the end, decodes in whole blocks (fewer calls)."""
    calls = []
    make = synth._stream_decoder

    def counted():
        decoder = make()
        push = decoder.push
        decoder.push = lambda z: calls.append(z.shape[-1]) or push(z)
        return decoder

    monkeypatch.setattr(synth, "_stream_decoder", counted)
    chunks = list(synth.stream("hello there. how are you?", voice="mid-1", seed=3))
    streamed_calls, calls[:] = list(calls), []
    assert all(c.shape == (1280,) and c.dtype == np.float32 for c in chunks)
    whole = synth.synthesize("hello there. how are you?", "mid-1", seed=3)
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-5, rtol=0)
    assert streamed_calls[0] == 1 and sum(streamed_calls) == sum(calls)
    assert len(calls) < len(streamed_calls) and max(calls) > 1


@pytest.mark.parametrize("run_ahead", [True, False])
def test_first_chunk_comes_after_the_first_lm_step(synth, run_ahead):
    """The LM's second step waits (in whichever thread runs it) until the first chunk has arrived: a stream
    that needed more than one LM step before its first audio would time out here."""
    steps, first_chunk_out, timed_out = [], threading.Event(), []

    def hook(*_):
        steps.append(1)
        if len(steps) == 2 and not first_chunk_out.wait(timeout=5):
            timed_out.append(True)

    handle = synth.model.lm.head.register_forward_hook(hook)
    synth.run_ahead = run_ahead
    try:
        stream = synth.stream("a sentence long enough to take many frames to say.", seed=0)
        next(stream)
        first_chunk_out.set()
        list(stream)
    finally:
        handle.remove()
        synth.run_ahead = None
    assert not timed_out and len(steps) > 5


@pytest.mark.parametrize("run_ahead", [True, False])
def test_cancel_stops_generation_within_a_frame(synth, run_ahead):
    """Counts LM steps (forward calls of the head), not delivered chunks: once ``cancel`` is set, while the LM is
    computing a frame, no further frame is computed, whichever thread runs the LM."""
    cancel, steps, at_cancel = threading.Event(), [], []

    def hook(*_):
        steps.append(1)
        if len(steps) == 6:  # mid-block: the decoder is waiting for frames 4..7 (blocks of 1, 2, 4, ...)
            cancel.set()
            at_cancel.append(len(steps))

    handle = synth.model.lm.head.register_forward_hook(hook)
    synth.run_ahead = run_ahead
    try:
        got = list(synth.stream("a long sentence to interrupt after a few frames of audio. and another.",
                                cancel=cancel))
    finally:
        handle.remove()
        synth.run_ahead = None
    assert at_cancel == [6] and len(steps) == 6  # the step that saw the cancel was the last
    assert len(got) < 6  # the frames of the unfinished block are not decoded either


def test_speed_changes_length(synth):
    normal = synth.synthesize("hello world.", seed=2)
    fast = synth.synthesize("hello world.", seed=2, speed=2.0)
    assert abs(fast.size - normal.size / 2) <= 2 * 1280
    with pytest.raises(ValueError, match="speed"):
        synth.synthesize("hello world.", speed=10.0)


def test_clone_gives_the_prompt_speaker_latent_and_round_trips(synth, prompt_wav, tmp_path):
    voice = synth.clone(prompt_wav, PROMPT_TEXT, name="me")
    wav, _ = sf.read(prompt_wav, dtype="float32")
    torch.testing.assert_close(voice.speaker, synth.model.speaker_from_wav(torch.from_numpy(wav)))
    assert voice.kind == "cloned"
    # ...and, by default, a prompt that every sentence continues: the transcript and posterior latents
    assert voice.prompt_ids.tolist() == synth.tokenizer(PROMPT_TEXT) and voice.prompt_latents.shape == (38, 8)
    path = tmp_path / "me.voice.pt"
    voice.save(path)
    np.testing.assert_array_equal(synth.synthesize("hello.", voice=str(path)), synth.synthesize("hello.", voice))


def test_clone_without_continuation_is_the_speaker_latent_alone(synth, prompt_wav):
    continued = synth.clone(prompt_wav, PROMPT_TEXT)
    latent_only = synth.clone(prompt_wav, PROMPT_TEXT, continuation=False)
    assert latent_only.prompt_ids is None and latent_only.prompt_latents is None and latent_only.kind == "cloned"
    torch.testing.assert_close(latent_only.speaker, continued.speaker)
    # the prompt conditions generation: same text, seed and speaker latent, different audio
    a, b = (synth.synthesize("hello.", voice=v, seed=0) for v in (continued, latent_only))
    assert not np.array_equal(a[: min(a.size, b.size)], b[: min(a.size, b.size)])


def test_clone_without_speaker_encoder_uses_prompt_continuation(tiny_prompt_model_dir, prompt_wav):
    synth = KalleSynthesizer.from_pretrained(tiny_prompt_model_dir)
    voice = synth.clone(prompt_wav, PROMPT_TEXT)
    assert voice.speaker is None and voice.prompt_latents.shape == (38, 8)  # ceil(3 s * 12.5)
    assert voice.prompt_ids.numel() == len(synth.tokenizer(PROMPT_TEXT))
    assert synth.synthesize("hello.", voice=voice).size > 0
    with pytest.raises(ValueError, match="continuation"):
        synth.clone(prompt_wav, PROMPT_TEXT, continuation=False)


def test_adapt_returns_a_reusable_voice_and_keeps_the_base(synth, prompt_wav, tmp_path):
    base = {k: v.clone() for k, v in synth.model.lm.state_dict().items()}
    voice = synth.adapt(prompt_wav, PROMPT_TEXT, steps=3, n_samples=8, learning_rate=1e-2)
    assert voice.kind == "adapted" and voice.lm_state is not None
    assert voice.prompt_latents is not None  # an adapted clone still continues its prompt
    for k, v in synth.model.lm.state_dict().items():
        torch.testing.assert_close(v, base[k], atol=0, rtol=0)
    # The same voice (speaker, prompt) without the adapted weights: only the weights can make the speech differ.
    cloned = synth.clone(prompt_wav, PROMPT_TEXT)
    torch.testing.assert_close(voice.speaker, cloned.speaker, atol=0, rtol=0)
    torch.testing.assert_close(voice.prompt_latents, cloned.prompt_latents, atol=0, rtol=0)
    assert voice.prompt_ids.tolist() == cloned.prompt_ids.tolist()
    adapted, unadapted = (synth.synthesize("hello.", voice=v, seed=0) for v in (voice, cloned))
    assert adapted.size > 0
    n = min(adapted.size, unadapted.size)
    assert not np.allclose(adapted[:n], unadapted[:n], atol=1e-3)
    np.testing.assert_array_equal(synth.synthesize("hello.", voice=voice, seed=0), adapted)
    path = tmp_path / "adapted.voice.pt"  # the voice file keeps the adapted weights
    voice.save(path)
    np.testing.assert_array_equal(synth.synthesize("hello.", voice=str(path), seed=0), adapted)


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "\U0001F600\U0001F44D"])
def test_unspeakable_text_is_a_clear_error(synth, text):
    with pytest.raises(TextError):
        synth.synthesize(text)


def test_unknown_characters_are_transliterated_or_dropped(synth):
    assert synth.tokenizer("caf\u00e9 \U0001F600 ok.") == synth.tokenizer("cafe  ok.")


def test_long_text_is_split_into_sentences(synth):
    text = " ".join(["this is sentence number one, and it goes on."] * 1000)  # ~9,000 words
    sentences = synth.sentences(text)
    assert len(sentences) == 1000 and all(len(s) <= 300 for s in sentences)
    stream = synth.stream(text)
    assert next(stream).shape == (1280,)
    stream.close()


def test_every_sentence_ends_by_the_stop_rule(stopping_model_dir):
    """The stopping model predicts the end after STOP_FRAMES frames (its max_frames is 5x that): each sentence is
    exactly that long, the stop frame itself not spoken, with one frame of silence between sentences, whatever the
    seed, temperature or backend."""
    synth = KalleSynthesizer.from_pretrained(stopping_model_dir)
    hop = synth.hop_length
    assert synth.model.generation_config().max_frames >= 5 * STOP_FRAMES
    text = "hello there. how are you?"
    for seed, temperature in ((0, None), (3, 1.0), (5, 0.0)):
        wav = synth.synthesize(text, seed=seed, temperature=temperature)
        assert wav.size == (2 * STOP_FRAMES + 1) * hop, (seed, temperature, wav.size / hop)
        assert np.abs(wav[: STOP_FRAMES * hop]).max() > 0  # speech, then a frame of silence, then speech
        np.testing.assert_array_equal(wav[STOP_FRAMES * hop : (STOP_FRAMES + 1) * hop], 0.0)
    assert len(list(synth.stream("hello there.", seed=1))) == STOP_FRAMES
    synth.onnx_steps = False
    assert synth.synthesize(text, seed=2).size == (2 * STOP_FRAMES + 1) * hop


def test_bad_voices_and_models(synth, tmp_path):
    with pytest.raises(KeyError, match="unknown voice"):
        synth.voice("nobody")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        KalleSynthesizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.yaml"):
        KalleSynthesizer.from_pretrained(tmp_path / "empty")


def test_prompt_checks(synth, prompt_wav, tmp_path):
    with pytest.raises(ValueError, match="transcript"):
        synth.clone(prompt_wav, "hi.")  # far too short for 3 s of speech
    with pytest.raises(ValueError, match="transcript"):
        synth.clone(prompt_wav, " ".join(["a very long transcript"] * 30))
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(4000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="prompt audio"):
        synth.clone(short, "hi.")
    stereo48k = tmp_path / "stereo48k.wav"
    wav, sr = sf.read(prompt_wav, dtype="float32")
    from espnet_kalle.audio import resample

    up = resample(wav, sr, 48000)
    sf.write(stereo48k, np.stack([up, up], axis=1), 48000)
    converted = synth.clone(stereo48k, PROMPT_TEXT)
    torch.testing.assert_close(converted.speaker, synth.clone(prompt_wav, PROMPT_TEXT).speaker, atol=0.05, rtol=0.05)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(ValueError):
        synth.clone(corrupt, PROMPT_TEXT)


def test_int8_generates_with_quantized_backbone_and_keeps_the_float_lm(tiny_model_dir, prompt_wav):
    fast = KalleSynthesizer.from_pretrained(tiny_model_dir, int8=True)
    lm, step = fast._generator_for(fast.voice("mid-1"))
    assert lm is fast.model.lm and step is not None  # onnxruntime runs the frames with int8 MatMuls
    ops = {node.op_type for node in onnx.load_from_string(step.model_bytes).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert isinstance(fast.model.lm.backbone.layers[0].mlp.up_proj, torch.nn.Linear)  # float LM kept for TTT
    a = fast.synthesize("hello world.", voice="low-1", seed=1)
    np.testing.assert_array_equal(a, fast.synthesize("hello world.", voice="low-1", seed=1))
    voice = fast.adapt(prompt_wav, PROMPT_TEXT, steps=2, n_samples=4, learning_rate=1e-2)
    adapted_lm, adapted_step = fast._generator_for(voice)
    assert adapted_lm is not fast.model.lm and adapted_step not in (None, step)
    assert fast.synthesize("hello.", voice=voice).size > 0
    fast.onnx_steps = False  # the PyTorch path: a copy of the LM with torch's dynamic int8 Linear layers
    torch_lm, no_step = fast._generator_for(fast.voice("mid-1"))
    assert no_step is None and torch_lm is not fast.model.lm
    assert any("quantized" in type(m).__module__ for m in torch_lm.backbone.modules())
    assert fast.synthesize("hello world.", voice="low-1", seed=1).size > 0
    assert not KalleSynthesizer.from_pretrained(tiny_model_dir).int8  # float unless asked or the model dir says so


def test_onnx_steps_follow_the_pytorch_path(synth):
    """Same seed, same voice: onnxruntime (LM steps and decoder) and PyTorch give the same speech up to float
    rounding."""
    from espnet_kalle.codec.onnx_decoder import OnnxStreamDecoder
    from espnet_kalle.streaming import StreamDecoder

    text = "a sentence long enough to take many frames to say."
    assert isinstance(synth._stream_decoder(), OnnxStreamDecoder)
    ours = synth.synthesize(text, voice="mid-1", seed=6)
    try:
        synth.onnx_steps = False
        assert isinstance(synth._stream_decoder(), StreamDecoder)
        reference = synth.synthesize(text, voice="mid-1", seed=6)
    finally:
        synth.onnx_steps = True
    assert ours.size == reference.size > 1280 * 5
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=0)


def test_a_voice_start_is_prefilled_once_and_gives_the_same_speech(synth, prompt_wav, monkeypatch):
    """The speaker and prompt text that open every sentence of a prompted voice are computed on its first sentence
    only; later sentences reuse them, and the audio is what prefilling the whole prefix gives."""
    voice = synth.clone(prompt_wav, PROMPT_TEXT, name="cached")
    lm, step = synth._generator_for(voice)
    synth._voice_starts.clear()  # an earlier clone of the same recording left the same start
    starts = []
    original = type(step).prefix_state
    monkeypatch.setattr(type(step), "prefix_state", lambda self, x: starts.append(x.shape[1]) or original(self, x))
    import espnet_kalle.tts.kalle as module  # where frames are generated (KallE.iter_frames)

    prefixes = []
    generate = module.iter_generate
    monkeypatch.setattr(module, "iter_generate", lambda lm, p, *a, **k: prefixes.append((p[0], k["start"]))
                        or generate(lm, p, *a, **k))
    text = "a sentence long enough to take many frames to say."
    first = synth.synthesize(text, voice=voice, seed=2)
    again = synth.synthesize(text + " And another one after it.", voice=voice, seed=2)
    assert starts == [1 + voice.prompt_ids.numel()]  # [speaker][prompt text], once for three sentences
    ids = torch.tensor(synth.check_text(text)[0])  # (an ESPnet char token list has no BOS to drop)
    with torch.inference_mode():
        whole_prefix = lm.prefix(torch.cat([voice.prompt_ids, ids]), voice.speaker, voice.prompt_latents)
    rest, start = prefixes[0]
    assert start.length + rest.shape[0] == whole_prefix.shape[0]  # generation sees [start][the rest], nothing twice
    torch.testing.assert_close(rest, whole_prefix[start.length :])
    np.testing.assert_array_equal(again[: first.size], first)
    monkeypatch.setattr(synth, "_voice_start", lambda *args: None)  # prefill every sentence's whole prefix
    whole = synth.synthesize(text, voice=voice, seed=2)
    assert whole.size == first.size
    np.testing.assert_allclose(whole, first, atol=1e-4, rtol=0)
    voice.prompt_ids = voice.prompt_ids[:-1]  # a voice changed in place is a new start, not a stale one
    monkeypatch.undo()
    monkeypatch.setattr(type(step), "prefix_state", lambda self, x: starts.append(x.shape[1]) or original(self, x))
    synth.synthesize(text, voice=voice, seed=2)
    assert starts == [1 + voice.prompt_ids.numel() + 1, 1 + voice.prompt_ids.numel()]


def test_run_ahead_by_default_only_with_a_core_to_spare(synth, monkeypatch):
    import espnet_kalle.synthesizer as module

    threads = []
    monkeypatch.setattr(module, "run_ahead", lambda items, name: threads.append(name) or items)
    monkeypatch.setattr(module, "usable_cores", lambda: 2)
    synth.run_ahead = None
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        synth.synthesize("hi.")
        assert threads == []
        torch.set_num_threads(1)
        synth.synthesize("hi.")
        assert threads == ["kalle-lm"]
    finally:
        torch.set_num_threads(previous)


def test_resynthesize_keeps_length_and_rejects_empty(synth, prompt_wav):
    wav, sr = sf.read(prompt_wav, dtype="float32")
    out = synth.resynthesize(prompt_wav)
    assert out.dtype == np.float32 and out.shape == wav.shape
    np.testing.assert_array_equal(out, synth.resynthesize(wav))  # path or samples: the same posterior mean
    with torch.inference_mode():  # the decoded posterior mean, not the input and not a sample
        mu, _ = synth.codec.encode(torch.from_numpy(wav).view(1, 1, -1))
        expected = synth.codec.decode(mu)[0, 0, : wav.size].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert not np.allclose(out, wav)
    with pytest.raises(ValueError, match="0 samples"):
        synth.resynthesize(np.zeros(0, dtype=np.float32))


def test_block_decoding_streams_the_same_audio_as_frame_by_frame(synth):
    """Decoding several frames per call (the default after the first) must not change a sample."""
    text = "a sentence long enough to take many frames to say."
    blocked = list(synth.stream(text, voice="low-1", seed=4))
    try:
        synth.decode_block_frames = 1
        single = list(synth.stream(text, voice="low-1", seed=4))
    finally:
        synth.decode_block_frames = 16
    assert len(blocked) == len(single) > 5
    np.testing.assert_allclose(np.concatenate(blocked), np.concatenate(single), atol=1e-5, rtol=0)


def test_lm_running_ahead_of_the_decoder_streams_the_same_audio(synth):
    text = "a sentence long enough to take many frames to say. and a second one."
    try:
        synth.run_ahead = True
        ahead = list(synth.stream(text, voice="high-1", seed=5))
        synth.run_ahead = False
        inline = list(synth.stream(text, voice="high-1", seed=5))
    finally:
        synth.run_ahead = None
    assert len(ahead) == len(inline) > 5
    np.testing.assert_array_equal(np.concatenate(ahead), np.concatenate(inline))
