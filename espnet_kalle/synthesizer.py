"""KalleSynthesizer: a packed model dir -> speech, offline or streamed in 80 ms chunks, with voices.

    synth = KalleSynthesizer.from_pretrained("mini-en")           # or a model dir
    wav = synth.synthesize("Hello there.", voice="low-1")          # float32 mono at synth.sample_rate
    for chunk in synth.stream("Hello there."): ...                # 1280-sample chunks as the LM makes them
    me = synth.clone("me.wav", "what I said in me.wav"); me.save("me.voice.pt")
    adapted = synth.adapt("me.wav", "what I said in me.wav", steps=50)   # test-time training

Generation is frame by frame: each latent the LM samples goes straight through the causal Flow-VAE decoder,
so the first audio leaves after the first LM step. Long text is split into sentences, spoken one after another.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from espnet_kalle.audio import load_audio
from espnet_kalle.codec.onnx_decoder import OnnxDecoder, can_export_decoder
from espnet_kalle.errors import InputError, KalleError, ModelInvalid, ModelNotFound, UnknownVoiceError
from espnet_kalle.languages import model_lang
from espnet_kalle.lm.generate import seeded_generators
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.onnx_step import OnnxDecodeStep, PrefixState, can_export
from espnet_kalle.lm.quantize import quantize_lm
from espnet_kalle.lm.ttt import test_time_train
from espnet_kalle.pretrained import read_model_meta, resolve_model_dir
from espnet_kalle.run_ahead import run_ahead, usable_cores
from espnet_kalle.text import TextError, Tokenizer, build_tokenizer, split_sentences
from espnet_kalle.voice import Voice, load_voice_dir

VoiceLike = Union[None, str, int, Voice]
MIN_PROMPT_SECONDS, MAX_PROMPT_SECONDS = 1.0, 30.0
# Plausible speaking rates in text tokens per second of prompt audio; outside this the transcript is wrong.
PROMPT_TOKENS_PER_SECOND = (1.5, 40.0)
SPEED_RANGE = (0.25, 4.0)  # speaking-rate factors FrameRateChanger accepts
SENTENCE_PAUSE_FRAMES = 1  # frames of silence between two sentences of an utterance
VOICE_STARTS_KEPT = 16  # voices whose prefix start (speaker + prompt text keys and values) stays computed
ADAPTED_KEPT = 4  # adapted (TTT) voices whose LM copy, and the onnxruntime graphs made from it, stay loaded


class FrameRateChanger:
    """Changes speaking rate by resampling the latent sequence in time (linear interpolation), frame by frame."""

    def __init__(self, speed: float):
        if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
            raise InputError(f"speed must be within [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}], got {speed}")
        self.speed = speed
        self.prev: Optional[torch.Tensor] = None
        self.count = -1  # index of the newest input frame
        self.next_pos = 0.0  # input-time position of the next output frame

    def push(self, frame: torch.Tensor) -> List[torch.Tensor]:
        if self.speed == 1.0:
            return [frame]
        self.count += 1
        out = []
        while self.next_pos <= self.count:
            frac = self.next_pos - (self.count - 1)
            out.append(frame if self.prev is None or frac >= 1 else self.prev + frac * (frame - self.prev))
            self.next_pos += self.speed
        self.prev = frame
        return out


class KalleSynthesizer:
    def __init__(self, model, codec, tokenizer: Tokenizer, voices: List[Voice], name: str = "", default_voice=None,
                 int8: bool = False):
        self.model = model
        self.codec = codec
        self.tokenizer = tokenizer
        model.bos_id = getattr(tokenizer, "bos_id", None)  # dropped from a text that continues a prompt
        self.name = name
        self.voices: Dict[str, Voice] = {v.name: v for v in voices}
        self.default_voice = default_voice if default_voice in self.voices else next(iter(self.voices), None)
        self.meta: Dict[str, object] = {}  # model.yaml of a packed model dir (name, languages, ...)
        self.model_dir: Optional[Path] = None
        # id(voice.lm_state) -> (lm_state, the LM carrying it), least recently used first; at most ADAPTED_KEPT.
        self._adapted: OrderedDict[int, Tuple[dict, KalleLM]] = OrderedDict()
        self._lock = threading.Lock()
        self.int8 = int8  # generate with int8 backbone weights (adapt() still trains the float LM)
        # Run the LM backbone (the prompt, then each frame) in onnxruntime (CPU, backbones up to
        # onnx_step.MAX_PARAMETERS): ~3x faster than eager PyTorch for small LMs. False: PyTorch (the reference path).
        # It also runs the Flow-VAE's istft decoder (``codec.onnx_decoder``; ~5x less time per call).
        self.onnx_steps = True
        self._onnx_decoder: Optional[OnnxDecoder] = None
        # (id(lm), int8, onnx_steps) -> (lm, the LM that generates, its onnxruntime step): one per loaded LM and mode.
        self._generators: Dict[tuple, Tuple[KalleLM, KalleLM, Optional[OnnxDecodeStep]]] = {}
        # Keys and values of each recent voice's speaker and prompt text, which open every sentence's prefix:
        # computed once per voice, so a sentence prefills only its own text and the prompt's frames.
        self._voice_starts: OrderedDict[tuple, Tuple[OnnxDecodeStep, PrefixState]] = OrderedDict()
        # Most frames per decoder call: after the first frame (decoded alone, for time to first audio) calls take
        # 2, 4, ... frames up to this, so audio arrives in growing bursts, each made in far less time than it lasts.
        # The decoder's cost per frame falls with the block (mini-en, onnxruntime, 1 thread: ~0.6 / 0.45 / 0.22 ms at
        # 1 / 4 / 16 frames; eager PyTorch: 4.2 / 1.7 / 0.55).
        self.decode_block_frames = 16
        # Sample the next frames in a worker thread while this one decodes, so LM and decoder overlap; the audio is
        # the same either way. None: only when torch leaves a core free for the worker (torch.set_num_threads
        # below the cores this process may use); with every core busy, the extra thread makes both slower.
        self.run_ahead: Optional[bool] = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, Path] = "mini-en", device: str = "cpu",
                        int8: Optional[bool] = None) -> KalleSynthesizer:
        """Load a packed model dir (see ``espnet_kalle.pretrained.pack``) or a registered name.

        ``int8``: generate with int8 backbone weights (CPU only; faster, slightly different samples). ``None``
        uses the model dir's own choice (``int8_lm`` in model.yaml), False forces float.
        """
        root = resolve_model_dir(name_or_path)
        meta = read_model_meta(root)  # a malformed or incomplete model.yaml fails here, before the weights load
        try:
            model, codec, tokenizer, voices = _load_parts(root, meta, device)
        except KalleError:
            raise
        except FileNotFoundError as error:
            raise ModelNotFound(f"{root}: {error}") from error
        except Exception as error:  # noqa: BLE001 - corrupt weights or configs fail in many ways; all mean one thing
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelInvalid(f"{root}: cannot load the model: {first}") from error
        if int8 is None:
            int8 = bool(meta.get("int8_lm", False)) and torch.device(device).type == "cpu"
        synth = cls(model, codec, tokenizer, voices, meta.get("name", root.name), meta.get("default_voice"), int8=int8)
        synth.meta = meta
        synth.model_dir = root
        model.sentence_end_ids = set(synth.tokenizer.sentence_end_ids)
        synth._generator(model.lm)  # export the onnxruntime graphs now rather than within the first synthesis
        synth._stream_decoder()
        return synth

    @property
    def lang(self) -> str:
        """The language the model was trained on (model.yaml ``lang``, checked; ``en`` for dirs without one)."""
        return model_lang(self.meta)

    @property
    def runs_ahead(self) -> bool:
        """Whether streaming samples in a worker thread: ``run_ahead``, or if None, whether torch leaves a core free."""
        if self.run_ahead is not None:
            return self.run_ahead
        return torch.get_num_threads() < usable_cores()

    @property
    def lm(self) -> KalleLM:
        """The base next-distribution LM (e.g. ``s.lm.predict_distributions(ids, latents)``)."""
        return self.model.lm

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.codec.hop_length)

    # ------------------------------------------------------------------ voices
    def voice(self, voice: VoiceLike = None, allow_files: bool = True) -> Voice:
        """Resolve a preset name, a seed, a voice file path or a Voice into a Voice.

        Servers resolving names sent over the network pass ``allow_files=False`` so a name never opens a file.
        """
        if voice is None:
            voice = self.default_voice if self.default_voice is not None else 0
        if isinstance(voice, Voice):
            return voice
        if isinstance(voice, (int, np.integer)) and not isinstance(voice, bool):
            return Voice(f"seed-{int(voice)}", speaker=self.model.voice_from_seed(int(voice)), seed=int(voice))
        if isinstance(voice, str):
            if voice in self.voices:
                return self.voices[voice]
            if allow_files and voice.endswith(".pt") and Path(voice).is_file():
                return Voice.load(voice)
            known = ", ".join(sorted(self.voices)) or "(none)"
            raise UnknownVoiceError(f"unknown voice {voice!r}; presets: {known}; or pass a seed or a .voice.pt file")
        raise TypeError(f"voice must be a preset name, a seed, a voice file or a Voice, not {type(voice).__name__}")

    def _samples(self, wav) -> np.ndarray:
        """A path (read and converted to the model's rate, mono) or samples -> 1-D float32 samples."""
        wav = load_audio(wav, self.sample_rate) if isinstance(wav, (str, Path)) else wav
        return np.asarray(wav, dtype=np.float32).reshape(-1)

    def _prompt_posterior(self, prompt_wav, prompt_text: str):
        wav = self._samples(prompt_wav)
        seconds = wav.shape[0] / self.sample_rate
        if not MIN_PROMPT_SECONDS <= seconds <= MAX_PROMPT_SECONDS:
            raise InputError(
                f"prompt audio is {seconds:.1f} s; use {MIN_PROMPT_SECONDS:.0f}-{MAX_PROMPT_SECONDS:.0f} s of speech"
            )
        ids = self.tokenizer(prompt_text)
        rate = len(ids) / seconds
        low, high = PROMPT_TOKENS_PER_SECOND
        if not low <= rate <= high:
            raise InputError(
                f"the prompt text has {len(ids)} tokens for {seconds:.1f} s of audio ({rate:.1f}/s; speech is "
                f"{low:g}-{high:g}/s): is it the transcript of this recording?"
            )
        tensor = torch.from_numpy(wav)
        with torch.inference_mode():
            mu, log_sigma = self.codec.prompt_posterior(tensor.view(1, 1, -1))
        return tensor, torch.tensor(ids), mu[0].T, log_sigma[0].T

    def resynthesize(self, wav) -> np.ndarray:
        """Encode a recording with the Flow-VAE and decode its posterior mean: what the codec alone keeps of it
        (the ceiling of anything the LM generates). ``wav``: a path or 16 kHz float samples; same length out."""
        wav = self._samples(wav)
        if wav.size == 0:
            raise InputError("resynthesize needs audio, got 0 samples")
        with torch.inference_mode():
            mu, _ = self.codec.encode(torch.from_numpy(wav).view(1, 1, -1))
            out = self.codec.decode(mu)[0, 0, : wav.size]
        return out.numpy().astype(np.float32)

    def clone(self, prompt_wav, prompt_text: str, name: str = "clone", seed: int = 0,
              continuation: bool = True) -> Voice:
        """A voice from one recording and its transcript (16 kHz is not required: audio is converted).

        With a speaker encoder the voice is the recording's speaker latent (the paper) and, with ``continuation``,
        also a prompt: the transcript and latents sampled once (by ``seed``) from the recording's posterior, which
        every sentence then continues. An autoregressive LM takes the voice mostly from the frames before it, so
        the prompt is what makes a clone sound like the recording (mini-en: voice ID 14 % -> 96 %, RESULTS.md);
        ``continuation=False`` keeps the paper's speaker-latent-only cloning. Without a speaker encoder (the
        released model) the prompt is the only way to clone.
        """
        posterior = self._prompt_posterior(prompt_wav, prompt_text)
        return self._clone_from(posterior, prompt_wav, prompt_text, name, seed, continuation)

    def _clone_from(self, posterior, prompt_wav, prompt_text: str, name: str, seed: int,
                    continuation: bool) -> Voice:
        wav, ids, mu, log_sigma = posterior
        source = Path(str(prompt_wav)).name if isinstance(prompt_wav, (str, Path)) else "audio"
        if self.model.speaker is None and not continuation:
            raise InputError("this model has no speaker encoder: it clones by prompt continuation only")
        voice = Voice(name, prompt_text=prompt_text, description=f"cloned from {source}")
        if self.model.speaker is not None:
            voice.speaker = self.model.speaker_from_wav(wav)
        if continuation:
            generator = torch.Generator().manual_seed(seed)
            voice.prompt_ids = ids
            voice.prompt_latents = mu + log_sigma.exp() * torch.randn(mu.shape, generator=generator)
            voice.description += " (prompt continuation)"
        return voice

    def with_own_prompt(self, voice: VoiceLike, prompt_text: str, seed: int = 0, temperature: float = 1.0) -> Voice:
        """``voice`` plus a prompt the model speaks itself: ``prompt_text`` generated once (by ``seed``, at
        ``temperature``) in that voice, which every sentence then continues, as a clone continues its recording.

        The LM takes its voice mostly from the frames before it, so a speaker latent alone can drift from
        sentence to sentence; its own prompt holds the voice (how presets are made, ``pretrained.presets``).
        Sampling the prompt at the paper's temperature 1.0 keeps it like the posterior samples the LM was trained
        to continue; prompts sampled at 0.5 did not hold their voice (mini-en RESULTS.md).
        """
        base = self.voice(voice)
        ids = self.check_text(prompt_text)[0]
        frames = list(self._frames(ids, base, temperature, 1.0, seed, None))
        if not frames:
            raise ValueError(f"the model spoke no frames for the prompt {prompt_text!r} (seed {seed})")
        return Voice(base.name, speaker=base.speaker, prompt_ids=torch.tensor(ids), prompt_latents=torch.stack(frames),
                     lm_state=base.lm_state, description=base.description, seed=base.seed, prompt_text=prompt_text,
                     tags=dict(base.tags))

    def adapt(self, prompt_wav, prompt_text: str, steps: int = 50, n_samples: int = 200, learning_rate: float = 1e-4,
              name: str = "adapted", seed: int = 0, continuation: bool = True) -> Voice:
        """Test-time training on one recording: a cloned voice (``clone``, the same ``continuation``) plus LM
        weights adapted to it."""
        posterior = self._prompt_posterior(prompt_wav, prompt_text)  # load and encode the prompt once
        voice = self._clone_from(posterior, prompt_wav, prompt_text, name, seed, continuation)
        _, ids, mu, log_sigma = posterior
        adapted = test_time_train(self.model.lm, ids, mu, log_sigma, voice.speaker, n_samples=n_samples,
                                  steps=steps, learning_rate=learning_rate, seed=seed)
        voice.lm_state = adapted.lm_state
        voice.description = f"adapted by TTT ({steps} steps, {n_samples} samples)" + (
            " + prompt continuation" if voice.prompt_latents is not None else "")
        voice.tags = {"ttt_final_loss": f"{adapted.losses[-1]:.3f}" if adapted.losses else ""}
        return voice

    def _generator_for(self, voice: Voice) -> Tuple[KalleLM, Optional[OnnxDecodeStep]]:
        """The LM that generates for ``voice`` (the base LM, or a cached copy carrying a TTT voice's weights; the
        base stays untouched) and the onnxruntime step that runs its frames (None: PyTorch runs them).

        Copying the LM and exporting its graphs take seconds: they run outside the lock, so other requests on a
        shared synthesizer (a server's) go on meanwhile; two threads adapting the same voice at once keep one copy.
        """
        if voice.lm_state is None:
            return self._generator(self.model.lm)
        key = id(voice.lm_state)
        with self._lock:
            entry = self._adapted.get(key)
            if entry is not None:
                self._adapted.move_to_end(key)
        if entry is None:
            adapted = copy.deepcopy(self.model.lm)
            adapted.load_state_dict(voice.lm_state)
            with self._lock:
                # Keep the state dict referenced so its id() cannot be reused by another voice while cached.
                entry = self._adapted.setdefault(key, (voice.lm_state, adapted.eval()))
                self._adapted.move_to_end(key)
                while len(self._adapted) > ADAPTED_KEPT:
                    _, (_, dropped) = self._adapted.popitem(last=False)
                    for gen_key in [k for k, v in self._generators.items() if v[0] is dropped]:
                        del self._generators[gen_key]
        return self._generator(entry[1])

    def _generator(self, lm: KalleLM) -> Tuple[KalleLM, Optional[OnnxDecodeStep]]:
        """``lm`` ready to generate in the current mode (int8, onnxruntime steps): made once (outside the lock),
        then cached while ``lm`` is loaded."""
        key = (id(lm), self.int8, self.onnx_steps)
        with self._lock:
            entry = self._generators.get(key)
        if entry is None or entry[0] is not lm:
            made = (lm, *self._prepare(lm))
            with self._lock:
                entry = self._generators.get(key)
                if entry is None or entry[0] is not lm:
                    entry = self._generators[key] = made
        return entry[1], entry[2]

    def _prepare(self, lm: KalleLM) -> Tuple[KalleLM, Optional[OnnxDecodeStep]]:
        on_cpu = next(lm.parameters()).device.type == "cpu"
        if self.onnx_steps and on_cpu and can_export(lm.backbone):
            return lm, OnnxDecodeStep.from_backbone(lm.backbone, int8=self.int8)
        return (quantize_lm(lm) if self.int8 and on_cpu else lm), None

    # ------------------------------------------------------------------ synthesis
    def sentences(self, text: str) -> List[str]:
        """How ``stream`` will split ``text`` (for progress reporting)."""
        return split_sentences(text)

    def is_speakable(self, text: str) -> bool:
        """True when ``stream`` would speak ``text`` (non-empty, every sentence has something to say)."""
        try:
            self.check_text(text)
        except TextError:
            return False
        return True

    def check_text(self, text: str) -> List[List[int]]:
        """Token ids per sentence; raises ``TextError`` now (e.g. on an event loop) for text that cannot be spoken."""
        sentences = split_sentences(text)
        if not sentences:
            self.tokenizer(text)  # raises the clear "empty text" error
        return [self.tokenizer(s) for s in sentences]

    def stream(
        self,
        text: str,
        voice: VoiceLike = None,
        temperature: Optional[float] = None,
        speed: float = 1.0,
        seed: int = 0,
        cancel: Optional[threading.Event] = None,
        pause_frames: int = SENTENCE_PAUSE_FRAMES,
        first_sentence: int = 0,
        lead_pause: bool = True,
    ) -> Iterator[np.ndarray]:
        """Yield float32 chunks of ``hop_length`` samples (80 ms) as they are generated.

        ``cancel`` (a threading.Event) stops generation before the next frame: callers in other threads use it
        to interrupt. Concurrent calls from several threads are safe: each keeps its own cache and decoder state.

        The sentence rule, the one of every caller: the text's sentences (``split_sentences``) are sentences
        ``first_sentence``, ``first_sentence + 1``, ... of an utterance; sentence i samples with seed ``seed + i``
        and, for i > 0, follows ``pause_frames`` frames of zeros. Speaking an utterance's sentences one call each,
        with their index, therefore gives the audio of one call on the whole text. ``lead_pause=False`` leaves out
        the pause before this text's first sentence (a caller that puts its own silence there, e.g. SSML's break).
        """
        return self._audio(text, voice, temperature, speed, seed, cancel, pause_frames, first_sentence,
                           lead_pause, first_block=1)

    def _audio(self, text: str, voice: VoiceLike, temperature: Optional[float], speed: float, seed: int,
               cancel: Optional[threading.Event], pause_frames: int, first_sentence: int, lead_pause: bool,
               first_block: int) -> Iterator[np.ndarray]:
        """``stream``'s chunks, decoding each sentence's first ``first_block`` frames in one decoder call."""
        resolved = self.voice(voice)
        token_ids = self.check_text(text)  # fail before any audio if a sentence is unspeakable
        for offset, ids in enumerate(token_ids):
            if cancel is not None and cancel.is_set():
                return  # cancelled during the last sentence, maybe before it had audio to give
            index = first_sentence + offset
            if index and (offset or lead_pause):
                for _ in range(pause_frames):
                    yield np.zeros(self.hop_length, dtype=np.float32)
            for chunk in self._stream_sentence(ids, resolved, temperature, speed, seed + index, cancel, first_block):
                yield chunk
                if cancel is not None and cancel.is_set():
                    return

    def _stream_sentence(self, ids, voice: Voice, temperature, speed, seed, cancel,
                         first_block: int = 1) -> Iterator[np.ndarray]:
        frames = self._frames(ids, voice, temperature, speed, seed, cancel)
        if self.runs_ahead:
            frames = run_ahead(frames, name="kalle-lm")
        decoder = self._stream_decoder()
        # Streaming decodes the first frame alone (time to first audio), later ones in doubling blocks: a decoder
        # call on one frame costs nearly what a call on several does (reading the weights dominates at this size).
        # ``synthesize`` starts with whole blocks: it returns nothing before the end anyway. Same audio either way.
        pending: List[torch.Tensor] = []
        block = max(1, min(first_block, self.decode_block_frames))
        try:
            for z in frames:
                pending.append(z)
                if len(pending) >= block:
                    yield from self._chunks(decoder.push(torch.stack(pending, dim=-1)[None]))
                    pending, block = [], min(2 * block, self.decode_block_frames)
        finally:
            frames.close()
        if cancel is not None and cancel.is_set():
            return
        if pending:
            yield from self._chunks(decoder.push(torch.stack(pending, dim=-1)[None]))
        yield from self._chunks(decoder.flush())

    def _stream_decoder(self):
        """A fresh incremental Flow-VAE decoder: onnxruntime's with ``onnx_steps`` (CPU, istft head), else PyTorch's."""
        on_cpu = next(self.codec.parameters()).device.type == "cpu"
        if not (self.onnx_steps and on_cpu and can_export_decoder(self.codec.decoder)):
            return self.codec.stream_decoder()
        if self._onnx_decoder is None:  # exported once, at loading (a race exports twice and keeps one)
            self._onnx_decoder = OnnxDecoder(self.codec.decoder, self.codec.latent_dim)
        return self._onnx_decoder.stream()

    def _frames(self, ids, voice: Voice, temperature, speed, seed, cancel) -> Iterator[torch.Tensor]:
        """The latent frames [D] of one sentence as the LM samples them (``KallE.iter_frames``, seeded by ``seed``),
        resampled in time for ``speed``."""
        lm, decode_step = self._generator_for(voice)
        resampler = FrameRateChanger(speed)
        frames = self.model.iter_frames(
            torch.as_tensor(ids), self.model.generation_config(temperature=temperature),
            seeded_generators([seed])[0], voice.speaker, voice.prompt_ids, voice.prompt_latents, lm=lm,
            decode_step=decode_step, voice_start=lambda prefix: self._voice_start(voice, lm, decode_step, prefix),
            cancel=cancel)
        try:
            for z in frames:
                yield from resampler.push(z)
        finally:
            frames.close()

    def _voice_start(self, voice: Voice, lm: KalleLM, decode_step: Optional[OnnxDecodeStep],
                     prefix: torch.Tensor) -> Optional[PrefixState]:
        """The keys and values of ``prefix``'s sentence-independent start, [speaker][prompt text], for a voice with
        a prompt (None otherwise, or when PyTorch runs the prompt): made on the voice's first sentence, then reused."""
        if voice.prompt_ids is None or decode_step is None or not decode_step.can_prefill:
            return None
        length = lm.speaker_positions + int(voice.prompt_ids.numel())
        key = (id(decode_step), _tensor_key(voice.speaker), _tensor_key(voice.prompt_ids))
        with self._lock:
            entry = self._voice_starts.get(key)
            if entry is not None and entry[0] is decode_step:  # not a dropped step whose id() was reused
                self._voice_starts.move_to_end(key)
                return entry[1]
        state = decode_step.prefix_state(prefix[None, :length])
        with self._lock:
            self._voice_starts[key] = (decode_step, state)
            while len(self._voice_starts) > VOICE_STARTS_KEPT:
                self._voice_starts.popitem(last=False)
        return state

    def _chunks(self, wav: torch.Tensor) -> Iterator[np.ndarray]:
        samples = wav.reshape(-1).float().numpy()
        for start in range(0, samples.shape[0], self.hop_length):
            yield samples[start : start + self.hop_length].copy()

    def synthesize(self, text: str, voice: VoiceLike = None, temperature: Optional[float] = None,
                   speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """The whole utterance as float32 mono at ``sample_rate`` (``stream``'s audio, decoded in fewer calls)."""
        chunks = list(self._audio(text, voice, temperature, speed, seed, None, SENTENCE_PAUSE_FRAMES, 0, True,
                                  first_block=self.decode_block_frames))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _load_parts(root: Path, meta: Dict[str, object], device: str) -> Tuple[object, object, Tokenizer, List[Voice]]:
    """The model dir's LM (with its codec set), codec, tokenizer and preset voices."""
    from espnet_kalle.codec.load import load_flow_vae
    from espnet_kalle.tts.load import load_kalle

    model, config = load_kalle(root / str(meta["lm_config"]), root / str(meta["lm_model"]), device)
    codec = load_flow_vae(root / str(meta["codec_config"]), root / str(meta["codec_model"]), device)
    codec = codec.prepare_for_inference()
    model.set_codec(codec)
    try:
        voices = load_voice_dir(root / str(meta.get("voices_dir", "voices")))
    except InputError as error:  # a preset the model dir ships is the model's fault, not the caller's
        raise ModelInvalid(f"{root}: preset voice: {error}") from error
    return model, codec, build_tokenizer(config, root), voices


def _tensor_key(tensor: Optional[torch.Tensor]) -> Optional[tuple]:
    """A hashable copy of a small tensor's contents: voices are mutable, so the cache keys on what they hold."""
    if tensor is None:
        return None
    array = tensor.detach().cpu().contiguous().numpy()
    return array.dtype.str, array.shape, array.tobytes()
