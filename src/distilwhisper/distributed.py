"""What the processes of an `accelerate launch` (or `torchrun`) do together, for jobs that are not training.

`eval`, `bias` and training's dev evaluation share out decoding: every process decodes whole batches of the plan the
main process made (so a batch is decoded exactly as one process would decode it), and the main process alone holds
the output folder and merges.  The process group is created with an explicit timeout, because a process that
finished its share waits at a barrier for the slowest one, and the default timeout (10 minutes with NCCL) is
shorter than a multi-language evaluation.  With one process every function here is a no-op.
"""

from __future__ import annotations

import heapq
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from distilwhisper.io import exclusive

DEFAULT_TIMEOUT_MINUTES = 60.0  # how long a process may wait for the others at a barrier
T = TypeVar("T")


def process_state(timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES):
    """accelerate's `PartialState` (rank, number of processes, device), creating the process group with
    `timeout_minutes` when this is the first call in the process (later calls get the same state)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # `accelerate launch --cpu` says so in the environment, which `Accelerator` reads and `PartialState` does not
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=timedelta(minutes=timeout_minutes))


def broadcast(obj: T, state) -> T:
    """The main process's `obj`, on every process."""
    if state.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj])[0]


def gather(obj: T, state) -> list[T]:
    """Every process's `obj`, in rank order, on every process."""
    if state.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def on_main(fn: Callable[[], T], state) -> T:
    """`fn()` run by the main process, its result handed to every process; when it raises, the main process
    re-raises and the others stop with its message (rather than wait at the next barrier until the timeout)."""
    result, failure = None, None
    if state.is_main_process:
        try:
            result = fn()
        except Exception as err:  # handed on below, then re-raised unchanged
            failure = err
    result, message = broadcast((result, f"{type(failure).__name__}: {failure}" if failure else None), state)
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"the main process stopped: {message}")
    return result


@contextmanager
def exclusive_on_main(folder: str | Path, state) -> Iterator[None]:
    """Hold `folder` for the whole launch: the main process takes its lock (`io.exclusive`); when another run holds
    it, every process stops with the holder's message."""
    with ExitStack() as stack:
        def hold() -> None:
            stack.enter_context(exclusive(folder))

        on_main(hold, state)
        yield


def share_out(costs: Sequence[float], n: int) -> list[list[int]]:
    """Indices of `costs` for each of `n` processes, balanced by total cost (longest first, each to the least
    loaded process); each process keeps its indices in their original order.  More processes than items leave
    some with none."""
    loads = [(0.0, rank) for rank in range(n)]
    shares: list[list[int]] = [[] for _ in range(n)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(share) for share in shares]
