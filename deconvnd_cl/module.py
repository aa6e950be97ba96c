"""PuzzleLib's Module and Variable, reduced to what a trainable layer needs."""

import numpy as np
import pyopencl.array as cl_array

from .device import default_queue, supports_dtype
from .errors import ModuleError


class Variable:
    """A parameter: `data`, and `grad` (zeros of the same shape) when `withgrad`."""

    def __init__(self, data, name=None, withgrad=True, grad=None):
        if not isinstance(data, cl_array.Array):
            raise ModuleError(f"Variable data must be a pyopencl.array.Array (given: {type(data).__name__})")
        self.data, self.name = data, name
        if grad is None and withgrad:
            grad = cl_array.zeros_like(data)
        self.grad = grad

    @property
    def hasGrad(self):
        return self.grad is not None


class Module:
    """Base of trainable modules: variables, train/eval mode, shape checks, parameter updates."""

    def __init__(self, name=None):
        self.name = name
        self.blueprint = None
        self.vars = {}
        self.attrs = {}
        self.train = True
        self.calctype = np.float32
        self.inData, self.data, self.grad = None, None, None

    # -- parameters
    def getVar(self, name):
        return self.vars.get(name)

    def setVar(self, name, var):
        if var is not None and not isinstance(var, Variable):
            raise ModuleError(f"setVar expects a Variable for {name!r} (given: {type(var).__name__})")
        self.vars[name] = var
        setattr(self, name, None if var is None else var.data)

    def getVarTable(self):
        return {name: var for name, var in self.vars.items() if var is not None}

    def zeroGradParams(self):
        for var in self.getVarTable().values():
            if var.hasGrad:
                var.grad.fill(0)

    def updateParams(self, learnRate):
        """PuzzleLib's sign: costs return the negative gradient, so the step is W += learnRate * W.grad."""
        for var in self.getVarTable().values():
            if var.hasGrad:
                var.data += learnRate * var.grad

    def numOfParams(self):
        return sum(var.data.size for var in self.getVarTable().values())

    def paramSize(self, unit=None):
        nbytes = sum(var.data.nbytes for var in self.getVarTable().values())
        divisors = {None: 1, "kb": 1024, "mb": 1024**2}
        if unit not in divisors:
            raise ModuleError(f"paramSize unit must be None, 'kb' or 'mb' (given: {unit!r})")
        return nbytes / divisors[unit] if unit else nbytes

    # -- weights on disk: PuzzleLib's HDF5 layout (params/<idx> datasets, links/<name>.<param> -> idx)
    def _prefix(self):
        return self.name or type(self).__name__

    def save(self, path):
        h5py = _h5py()
        with h5py.File(path, "w") as f:
            params, links = f.create_group("params"), f.create_group("links")
            for idx, (name, var) in enumerate(sorted(self.getVarTable().items())):
                params.create_dataset(str(idx), data=var.data.get())
                links.create_dataset(f"{self._prefix()}.{name}", data=idx)

    def load(self, path):
        """Weights from a PuzzleLib-layout file; links are matched by this module's name, or by the parameter
        name alone when exactly one link ends with it. All checked before anything is replaced."""
        h5py = _h5py()
        loaded = {}
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ModuleError(f"cannot open {path} as HDF5: {e}") from None
        with f:
            if "params" not in f or "links" not in f:
                raise ModuleError(f"{path} is not in PuzzleLib's layout (expected groups 'params' and 'links')")
            links = {name: int(f["links"][name][()]) for name in f["links"]}
            for name, var in self.getVarTable().items():
                link = f"{self._prefix()}.{name}"
                if link not in links:
                    candidates = [k for k in links if k.endswith("." + name)]
                    if len(candidates) != 1:
                        raise ModuleError(f"{path} has no link for parameter {name!r} (links: {sorted(links)})")
                    link = candidates[0]
                data = f["params"][str(links[link])][()]
                if data.shape != var.data.shape:
                    raise ModuleError(f"{path}: {link} has shape {data.shape} (expected: {var.data.shape})")
                loaded[name] = data.astype(var.data.dtype)
        for name, data in loaded.items():
            self.vars[name].data.set(data)

    # -- modes
    def trainMode(self):
        self.train = True

    def evalMode(self):
        self.train = False

    def calcMode(self, T):
        T = np.dtype(T)
        if T not in (np.float32, np.float64, np.float16):
            raise ModuleError(f"calcMode dtype {T} is not supported (expected: float32, float64 or float16)")
        queue = default_queue()
        if not supports_dtype(queue.device, T):
            raise ModuleError(f"calcMode dtype {T} is not supported by device {queue.device.name.strip()}")
        for name, var in self.getVarTable().items():  # converted on the host: no fp16 kernels needed
            data = cl_array.to_device(queue, var.data.get().astype(T))
            self.setVar(name, Variable(data, name=var.name, withgrad=var.hasGrad))
        self.calctype = T.type

    # -- calls
    def __call__(self, data):
        self.checkDataShape(data.shape if hasattr(data, "shape") else data)
        self.checkDataType(data)
        self.inData = data
        self.data = self.updateData(data)
        return self.data

    def backward(self, grad, updParamGrads=True, updGrad=True, scale=1.0, momentum=0.0):
        if self.inData is None:
            raise ModuleError("backward called before forward")
        self.checkGradShape(grad.shape if hasattr(grad, "shape") else grad)
        self.checkDataType(grad, "grad")
        self.updateGradAndParams(grad, updParamGrads and self.train, updGrad, scale, momentum)
        return self.grad

    def checkDataType(self, array, what="data"):
        if not isinstance(array, cl_array.Array):
            raise ModuleError(f"{what} must be a pyopencl.array.Array (given: {type(array).__name__})")
        if array.dtype != np.dtype(self.calctype):
            raise ModuleError(f"{what} has dtype {array.dtype} (expected: {np.dtype(self.calctype)})")

    def reset(self):
        self.inData, self.data, self.grad = None, None, None

    def getBlueprint(self):
        return {"classname": type(self).__name__, "scheme": dict(self.blueprint or {}),
                "elements": {name: (var.data.shape, str(var.data.dtype)) for name, var in self.getVarTable().items()}}

    # -- for subclasses
    def updateData(self, data):
        raise NotImplementedError

    def updateGradAndParams(self, grad, updParamGrads, updGrad, scale, momentum):
        raise NotImplementedError

    def checkDataShape(self, shape):
        pass

    def checkGradShape(self, shape):
        pass

    def dataShapeFrom(self, shape):
        raise NotImplementedError

    def gradShapeFrom(self, shape):
        raise NotImplementedError


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ModuleError("save/load need h5py: pip install deconvnd_cl[hdf5]") from None
    return h5py
