"""One synthesis path and one owner per rule: ESPnet inference and the synthesizer generate the same frames, a
prompt drops the target's BOS in both, the sentence rule is the synthesizer's, and a shared synthesizer copies
adapted voices outside its lock and keeps a bounded number of them."""

import copy
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import espnet_kalle.synthesizer as synthesizer_module
from espnet_kalle.synthesizer import ADAPTED_KEPT, KalleSynthesizer
from espnet_kalle.voice import Voice


@pytest.fixture(scope="module")
def synth(tiny_model_dir):
    synth = KalleSynthesizer.from_pretrained(tiny_model_dir)
    synth.onnx_steps = False  # the PyTorch path, which ESPnet's inference also takes
    return synth


def test_inference_and_the_synthesizer_generate_the_same_frames(synth):
    voice = synth.voice("low-1")
    ids = synth.check_text("hello there.")[0]
    frames = torch.stack(list(synth._frames(ids, voice, None, 1.0, 5, None)))
    out = synth.model.inference(torch.tensor(ids), seed=5, speaker=voice.speaker, prompt_text=voice.prompt_ids,
                                prompt_latents=voice.prompt_latents, decode_wav=False)
    torch.testing.assert_close(out["feat_gen"], frames, atol=0, rtol=0)


def test_inference_drops_the_bos_of_text_that_continues_a_prompt(synth, monkeypatch):
    """The released wiring: prompt ids (with BOS) + target ids without BOS. Marking the first target token as BOS
    must give what inference gives on the text without it; without a prompt the token stays."""
    model = synth.model
    voice = synth.voice("low-1")
    ids = torch.tensor(synth.check_text("hello there.")[0])
    kwargs = dict(seed=3, speaker=voice.speaker, prompt_text=voice.prompt_ids, prompt_latents=voice.prompt_latents,
                  decode_wav=False)
    without = model.inference(ids[1:], **kwargs)["feat_gen"]
    monkeypatch.setattr(model, "bos_id", int(ids[0]))
    with_bos = model.inference(ids, **kwargs)["feat_gen"]
    torch.testing.assert_close(with_bos, without, atol=0, rtol=0)
    kept = model.inference(ids, seed=3, speaker=voice.speaker, decode_wav=False)["feat_gen"]
    dropped = model.inference(ids[1:], seed=3, speaker=voice.speaker, decode_wav=False)["feat_gen"]
    assert kept.shape != dropped.shape or not torch.equal(kept, dropped)


def test_sentences_spoken_one_call_each_sound_as_one_call(synth):
    """The sentence rule (seed + i, a pause before sentence i > 0) belongs to stream: callers pass the index."""
    text = "hello there. how are you? fine."
    whole = np.concatenate(list(synth.stream(text, voice="mid-1", seed=4)))
    parts = [np.concatenate(list(synth.stream(sentence, voice="mid-1", seed=4, first_sentence=i)))
             for i, sentence in enumerate(synth.sentences(text))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    second = synth.sentences(text)[1]
    no_lead = np.concatenate(list(synth.stream(second, voice="mid-1", seed=4, first_sentence=1, lead_pause=False)))
    np.testing.assert_array_equal(no_lead, parts[1][synth.hop_length :])  # the same sentence without its pause


def test_adapted_voices_are_copied_outside_the_lock_and_bounded(synth, monkeypatch):
    """A server's other requests must not wait seconds for one voice's LM copy; only ADAPTED_KEPT copies stay."""
    held = []
    real_deepcopy = copy.deepcopy

    def watched(obj, *args):
        held.append(synth._lock.locked())
        return real_deepcopy(obj, *args)

    monkeypatch.setattr(synthesizer_module, "copy", SimpleNamespace(deepcopy=watched))
    state = synth.model.lm.state_dict()
    voices = [Voice(f"adapted-{i}", speaker=synth.voice("low-1").speaker,
                    lm_state={k: v.clone() for k, v in state.items()}) for i in range(ADAPTED_KEPT + 2)]
    lms = [synth._generator_for(v)[0] for v in voices]
    assert held == [False] * len(voices)
    assert len(synth._adapted) == ADAPTED_KEPT
    assert {id(lm) for lm in lms[-ADAPTED_KEPT:]} == {id(entry[1]) for entry in synth._adapted.values()}
    adapted_generators = [v for v in synth._generators.values() if v[0] is not synth.model.lm]
    assert len(adapted_generators) == ADAPTED_KEPT  # the dropped voices' generators went with them
    assert synth._generator_for(voices[-1])[0] is lms[-1]  # cached: no new copy
    assert len(held) == len(voices)


def test_a_shared_synthesizer_speaks_adapted_voices_from_several_threads(synth):
    state = {k: v.clone() for k, v in synth.model.lm.state_dict().items()}
    voice = Voice("adapted", speaker=synth.voice("low-1").speaker, lm_state=state)
    results, errors = [None, None], []

    def speak(i):
        try:
            results[i] = synth.synthesize("hi there.", voice=voice, seed=1)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    np.testing.assert_array_equal(results[0], results[1])
    plain = Voice("plain", speaker=voice.speaker)  # the same weights, not adapted: the same speech
    np.testing.assert_array_equal(results[0], synth.synthesize("hi there.", voice=plain, seed=1))
