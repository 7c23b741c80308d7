"""The ``set_stride`` worker command: how far the model's window slides when the text outgrows
it (:func:`gptviz.engine.window.window_start_for`'s stride), as a fraction of the block size.
"""

from __future__ import annotations

from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import Request

#: The strides offered: the block size divided by these (2: the default, half the window).
STRIDE_DIVISORS = (2, 4, 8, 16)


def stride_for(block_size: int, divisor: int) -> int:
    """Stride in tokens for ``block_size / divisor`` (at least 1)."""
    if int(divisor) not in STRIDE_DIVISORS:
        raise ValueError(f"the window slides by 1/{divisor} of the block: choose one of "
                         f"{', '.join(f'1/{d}' for d in STRIDE_DIVISORS)}")
    return max(1, block_size // int(divisor))


@command("set_stride")
def set_stride(worker, req: Request, divisor: int) -> None:
    """Slide the window by ``block_size // divisor`` from now on; the current window is
    recomputed at once when its start moves with the new stride."""
    s = worker.need_session()
    window = s._window  # the engine's ContextWindow: the stride is one of its settings
    stride = stride_for(s.block_size, divisor)
    if window.stride != stride:
        window.stride = stride
        start = window.start
        window.sync(s.tokens, s.device_ablation)
        if window.start != start:
            worker.builder.note_jump()
    worker.emit_snapshot(req)
