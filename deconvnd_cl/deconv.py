"""DeconvND and its 1d/2d/3d shorthands: PuzzleLib's transposed-convolution modules on OpenCL."""

from math import prod

import numpy as np
import pyopencl.array as cl_array

from . import functional
from .device import default_queue
from .device_group import as_group, check_home
from .errors import ModuleError
from .geometry import Geometry
from .initialisers import create_weights
from .module import Module, Variable
from .problem import check_scratch_limit


class DeconvND(Module):
    def __init__(self, nd, inmaps, outmaps, size, stride=1, pad=0, dilation=1, postpad=0, wscale=1.0,
                 useBias=True, name=None, initscheme=None, empty=False, groups=1):
        super().__init__(name)
        self.geometry = Geometry.create(nd, size, stride, pad, dilation, postpad, groups)
        self.geometry.check_maps(inmaps, outmaps)
        self.blueprint = dict(nd=nd, inmaps=inmaps, outmaps=outmaps, size=size, stride=stride, pad=pad,
                              dilation=dilation, postpad=postpad, wscale=wscale, useBias=useBias, name=name,
                              initscheme=initscheme, empty=empty, groups=groups)
        self.nd, self.inmaps, self.outmaps, self.groups = nd, inmaps, outmaps, groups
        g = self.geometry
        self.size, self.stride, self.pad, self.dilation, self.postpad = g.size, g.stride, g.pad, g.dilation, g.postpad
        self.useBias = useBias
        self.variants = {}  # family -> kernel variant chosen by optimizeForShape (used where it fits a call)
        self.memlimit = None  # bytes a scratch buffer of a call may take (optimizeForShape's memlimit)
        self.devices = None  # a DeviceGroup sharing each call's batch (setDevices)
        self.W = self.b = None
        if empty:
            return
        queue = default_queue()
        wshape = (inmaps, outmaps // groups) + g.size
        fanin, fanout = inmaps * g.taps, (outmaps // groups) * g.taps
        W = create_weights(wshape, fanin, fanout, initscheme, wscale)
        self.setVar("W", Variable(cl_array.to_device(queue, W)))
        if useBias:
            self.setVar("b", Variable(cl_array.zeros(queue, (1, outmaps) + (1,) * nd, np.float32)))

    def _conv_args(self):
        return dict(stride=self.stride, pad=self.pad, dilation=self.dilation, groups=self.groups)

    def updateData(self, data):
        if self.W is None:
            raise ModuleError(f"{type(self).__name__} {self.name or ''} has no weights (created with empty=True)")
        return functional.forward_call(data, self.W, self.b, dict(self._conv_args(), postpad=self.postpad),
                                       self.memlimit, variants=self.variants, train=self.train, devices=self.devices)

    def updateGradAndParams(self, grad, updParamGrads, updGrad, scale, momentum):
        wvar, bvar = self.vars.get("W"), self.vars.get("b")
        gx, (wgrad, bgrad) = functional.backward_call(
            self.inData, grad, self.W, self.b, self._conv_args(), self.memlimit, want_data=updGrad,
            want_params=updParamGrads, wgrad=wvar.grad if updParamGrads else None,
            bgrad=bvar.grad if updParamGrads and bvar else None, scale=scale, momentum=momentum,
            variants=self.variants, devices=self.devices)
        if updGrad:
            self.grad = gx

    def setDevices(self, devices):
        """Share every later call's batch among the queues of `devices` (a DeviceGroup, or a list of queues with
        equal shares; None: back to one device). The first queue's context must hold the module's parameters
        and the data; the parameters stay there, and each device reads them (or a copy) at each call."""
        if devices is None:
            self.devices = None
            return
        group = as_group(devices)
        for name, var in self.getVarTable().items():
            check_home(group, var.data, name, var.data.dtype)
        self.devices = group

    # -- shapes
    def _spatial_in(self, shape):
        if len(shape) != self.nd + 2:
            raise ModuleError(f"Data must be {self.nd + 2}d tensor (given shape {tuple(shape)})")
        return tuple(shape[2:])

    def checkDataShape(self, shape):
        self._spatial_in(shape)
        if shape[1] != self.inmaps:
            raise ModuleError(f"Data has {shape[1]} maps (expected: {self.inmaps})")
        self.geometry.out_spatial(tuple(shape[2:]))

    def checkGradShape(self, shape):
        expected = self.dataShapeFrom(self.inData.shape)
        if tuple(shape) != expected:
            raise ModuleError(f"Grad has shape {tuple(shape)} (expected: {expected})")

    def dataShapeFrom(self, shape):
        return (shape[0], self.outmaps) + self.geometry.out_spatial(self._spatial_in(shape))

    def gradShapeFrom(self, shape):
        g = self.geometry
        spatial = []
        for o, k, s, p, d, pp in zip(self._spatial_in(shape), g.size, g.stride, g.pad, g.dilation, g.postpad):
            span = o - pp - d * (k - 1) + 2 * p - 1
            if span < 0 or span % s:
                raise ModuleError(f"Grad spatial size {tuple(shape[2:])} is not an output size of this layer")
            spatial.append(span // s + 1)
        return (shape[0], self.inmaps) + tuple(spatial)

    def optimizeForShape(self, shape, memlimit=None):
        """Time the kernel variants for this input shape on this device and use the fastest from now on (on
        inputs of other shapes, each where it fits, else the default); the choice is stored beside the kernel
        cache, so later processes reuse it without timing.

        memlimit: bytes one scratch buffer of this module's calls may take (the padded operands, packed weights,
        partial sums); a call whose scratch would take more is split along the batch, as it is when the device's
        allocation limit would be passed."""
        from .layer_spec import LayerSpec
        from .tuning import tune_layer
        self.checkDataShape(shape)
        self.memlimit = check_scratch_limit(memlimit)
        spec = LayerSpec(self.nd, self.inmaps, self.outmaps, self.size, self.stride, self.pad, self.dilation,
                         self.postpad, self.groups, np.dtype(self.calctype).name, shape[0], tuple(shape[2:]))
        self.variants = tune_layer(spec, shape=tuple(shape), memlimit=self.memlimit)
        return self.variants

    def numOfFlops(self, shape):
        """Multiply-adds x 2 of one forward pass on data of this shape."""
        return 2 * shape[0] * self.inmaps * (self.outmaps // self.groups) * prod(shape[2:]) * self.geometry.taps


class Deconv1D(DeconvND):
    def __init__(self, inmaps, outmaps, size, stride=1, pad=0, dilation=1, postpad=0, wscale=1.0, useBias=True,
                 name=None, initscheme=None, empty=False, groups=1):
        super().__init__(1, inmaps, outmaps, size, stride, pad, dilation, postpad, wscale, useBias, name,
                         initscheme, empty, groups)


class Deconv2D(DeconvND):
    def __init__(self, inmaps, outmaps, size, stride=1, pad=0, dilation=1, postpad=0, wscale=1.0, useBias=True,
                 name=None, initscheme=None, empty=False, groups=1):
        super().__init__(2, inmaps, outmaps, size, stride, pad, dilation, postpad, wscale, useBias, name,
                         initscheme, empty, groups)


class Deconv3D(DeconvND):
    def __init__(self, inmaps, outmaps, size, stride=1, pad=0, dilation=1, postpad=0, wscale=1.0, useBias=True,
                 name=None, initscheme=None, empty=False, groups=1):
        super().__init__(3, inmaps, outmaps, size, stride, pad, dilation, postpad, wscale, useBias, name,
                         initscheme, empty, groups)
