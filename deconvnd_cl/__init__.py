"""deconvnd_cl: N-dimensional transposed convolution on any OpenCL device, with PuzzleLib's module API."""

__version__ = "0.1.0"

from . import reference
from .deconv import Deconv1D, Deconv2D, Deconv3D, DeconvND
from .device import create_queue, default_queue, set_default_queue
from .device_group import DeviceGroup
from .device_shares import measure_shares, measured_group
from .distributed import allreduce_gradients, broadcast_parameters
from .errors import KernelBuildError, ModuleError
from .functional import deconvNd, deconvNdBackwardData, deconvNdBackwardParams
from .module import Module, Variable

__all__ = [
    "DeconvND", "Deconv1D", "Deconv2D", "Deconv3D", "Module", "Variable", "ModuleError", "KernelBuildError",
    "deconvNd", "deconvNdBackwardData", "deconvNdBackwardParams", "default_queue", "set_default_queue", "create_queue",
    "DeviceGroup", "measure_shares", "measured_group", "broadcast_parameters", "allreduce_gradients", "reference",
]
