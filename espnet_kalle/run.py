"""Run a stock ESPnet entry point with espnet-kalle's models registered.

    python -m espnet_kalle.run -m espnet2.bin.gan_codec_train --config conf.yaml ...

ESPnet has no plugin mechanism and its recipes call ``python -m espnet2.bin.<module>``; this wrapper adds our
classes to the task's choices first (``espnet_kalle.tasks.register``), then runs the module as ``__main__``
with the remaining arguments, so every ESPnet option and behaviour is unchanged.
"""

from __future__ import annotations

import runpy
import sys
from typing import List, Optional

USAGE = "usage: python -m espnet_kalle.run -m espnet2.bin.<module> [module arguments ...]"


def _tasks_for(module: str) -> Optional[List[str]]:
    """The tasks a ``espnet2.bin`` module needs (``gan_codec_train`` -> ["gan_codec"]); None = all."""
    from espnet_kalle.tasks.registry import known_tasks

    base = module.rsplit(".", 1)[-1]
    matches = [t for t in known_tasks() if base.startswith(t + "_")]
    return [max(matches, key=len)] if matches else None


def register_for(module: str) -> None:
    """Register the models ``module`` needs (``register`` also keeps ESPnet's text front ends offline)."""
    from espnet_kalle.tasks.registry import register

    register(_tasks_for(module))


def close_process_group(wait_for_peers: bool) -> None:
    """Tear down the ``torch.distributed`` process group ESPnet's trainer opened and never closes.

    Without this, each rank's gloo (or NCCL) group is destroyed during interpreter shutdown, racing the other ranks:
    a rank that finishes first (ranks other than 0 skip checkpoint averaging) can die with ``terminate called
    without an active exception`` (SIGABRT) after a successful run. On success the ranks meet at a barrier first,
    so none closes its connections while another still uses them; after a failure they do not wait for each other.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if wait_for_peers:
        dist.barrier()
    dist.destroy_process_group()


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "-m" or argv[1].startswith("-"):
        if argv[:1] in (["-h"], ["--help"]):
            print(USAGE + "\n\n" + (__doc__ or ""))
            raise SystemExit(0)
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    module, rest = argv[1], argv[2:]
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        print(f"espnet_kalle.run: no module named {module!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    register_for(module)
    sys.argv = [module] + rest
    completed = False
    try:
        # sys.modules["__main__"] stays this wrapper (alter_sys=False): processes the module starts with
        # multiprocessing's "spawn" re-import the parent's main module, so they come back through here.
        runpy.run_module(module, run_name="__main__", alter_sys=False)
        completed = True
    except SystemExit as exit_:
        completed = exit_.code in (None, 0)
        raise
    finally:
        close_process_group(wait_for_peers=completed)


if __name__ == "__main__":
    main()
elif __name__ == "__mp_main__":
    # A worker the wrapped module started with multiprocessing's "spawn" (ESPnet's one process per GPU): it starts
    # from a fresh interpreter, re-imports the main module under this name, and then builds the model by name, so
    # it needs our classes registered as the parent had them. sys.argv is the parent's ([module, ...]).
    register_for(sys.argv[0])
