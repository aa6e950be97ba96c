"""Kernel strategies: per pass, an ordered list of implementations; the first that serves the call runs.

A strategy is named after the device kind it is shaped for: "cpu" (register-tiled kernels, one work-item a
loop nest) and "gpu" (work-group tiled kernels staging operands in local memory). On a CPU device the cpu
implementations come first, on any other device (GPU, accelerator, simulator) the gpu ones; each pass falls back
to the next implementation that serves the call. DECONVND_CL_STRATEGY=cpu|gpu keeps only that strategy's
implementations, on any device (the tests run the GPU kernels on PoCL this way); a call it cannot serve is a
ModuleError.
"""

from .. import settings
from ..errors import ModuleError
from ..plans import Plans
from .cpu_backward_data import RegisterTiledBackwardData
from .cpu_backward_weights import RegisterTiledBackwardWeights
from .cpu_forward import RegisterTiledForward
from .gpu_backward_data import WorkgroupTiledBackwardData
from .gpu_backward_weights import WorkgroupTiledBackwardWeights
from .gpu_forward import WorkgroupTiledForward

IMPLEMENTATIONS = {
    "forward": (WorkgroupTiledForward(), RegisterTiledForward()),
    "backward_data": (WorkgroupTiledBackwardData(), RegisterTiledBackwardData()),
    "backward_weights": (WorkgroupTiledBackwardWeights(), RegisterTiledBackwardWeights()),
}


def preferred_strategy(problem):
    return problem.kind.strategy


def ordered(family, problem):
    """The implementations of `family` in the order they are tried for this call."""
    forced = settings.forced_strategy()
    implementations = IMPLEMENTATIONS[family]
    if forced:
        return [i for i in implementations if i.strategy == forced]
    preferred = preferred_strategy(problem)
    return sorted(implementations, key=lambda i: i.strategy != preferred)


_chosen = Plans()


def implementation(family, problem):
    """The implementation that computes `family` for this call (remembered per strategy switch and call shape)."""
    forced = settings.forced_strategy()
    return _chosen.get((family, forced, problem.shape_key), lambda: _first_serving(family, problem))


def _first_serving(family, problem):
    reasons = []
    for candidate in ordered(family, problem):
        reason = candidate.serves(problem)
        if reason is None:
            return candidate
        reasons.append(f"{candidate.strategy}: {reason}")
    forced = settings.forced_strategy()
    raise ModuleError(f"no {family} implementation{f' of strategy {forced!r}' if forced else ''} serves this call "
                      f"({problem.describe()})" + (f": {'; '.join(reasons)}" if reasons else ""))
