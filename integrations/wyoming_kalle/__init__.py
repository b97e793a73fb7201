"""Wyoming text-to-speech server for espnet-kalle, so Home Assistant can speak with KALL-E voices.

Run ``python -m wyoming_kalle --uri tcp://0.0.0.0:10200`` and add the host:port in Home Assistant's Wyoming
integration. Modules: ``voices`` (what Describe answers), ``synthesis`` (the worker pool that keeps inference off
the event loop), ``handler`` (one per connection), ``wire`` (event reading that survives garbage).
"""

from espnet_kalle import __version__

__all__ = ["__version__"]
