"""Registration of espnet-kalle's models with ESPnet's tasks (see ``registry.py``)."""

from espnet_kalle.tasks.registry import CHOICES, register

__all__ = ["CHOICES", "register"]
