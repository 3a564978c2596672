"""A Ray session for geochat's distributed runs (dataset builds, many scenes).

Both the build pipeline (``geochat build ... --engine ray``) and scene runs
(``geochat scene ... --engine ray``) attach to a cluster or start a local Ray, quiet Ray Data's
own progress output (the caller reports progress), and stop the Ray they started.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None, workers: int, log_level: int = logging.WARNING) -> Iterator:
    """Yields the ``ray`` module with a session running; shuts down a session it started.

    Args:
        address: A cluster's address, or None for a local Ray of ``workers`` CPUs (an already
            initialised Ray is used as it is).
        workers: CPUs of a local Ray.
        log_level: Level of Ray Data's logger: its INFO lines would garble the caller's bars.
    """
    import ray  # optional: only --engine ray needs it

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    logging.getLogger("ray.data").setLevel(log_level)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
