"""Pipecat integration of espnet-kalle: ``KalleTTSService`` streams KALL-E speech into voice-agent pipelines.

Install with ``pip install "espnet-kalle[pipecat]"``.
"""

from pipecat_kalle.tts import KalleTTSService, KalleTTSSettings

__all__ = ["KalleTTSService", "KalleTTSSettings"]
