"""The peers the benchmark runs beside the library, in the same process: PyTorch's CPU conv_transpose (every
pass), and for the forward pass the inference runtimes a user would deploy an up-sampling network with on a
CPU: ONNX Runtime and OpenVINO, each running a one-node ConvTranspose model built with the `onnx` helper.
Each peer is optional: one that is not installed is skipped with a line saying so.
"""

import os
import tempfile

import numpy as np

THREADS = os.cpu_count() or 1


class TorchLayer:
    name = "torch"
    passes = ("fwd", "bwd_data", "bwd_weights", "step")

    def __init__(self, spec, torch, device="cpu"):
        g = spec.geometry()
        self.torch, self.device = torch, device
        rng = np.random.default_rng(0)
        shape = spec.input_shape()
        self.fn = getattr(torch.nn.functional, f"conv_transpose{spec.nd}d")
        self.kw = dict(stride=g.stride, padding=g.pad, output_padding=g.postpad, groups=g.groups,
                       dilation=g.dilation)
        self.x = torch.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True, device=device)
        self.W = torch.tensor((0.1 * rng.standard_normal(spec.weight_shape())).astype(np.float32),
                              requires_grad=True, device=device)
        self.b = torch.zeros(spec.outmaps, requires_grad=True, device=device)
        with torch.no_grad():
            self.grad = torch.randn_like(self.fn(self.x, self.W, self.b, **self.kw))
        self._graph = None

    def run(self, name):
        self._run(name)
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def _run(self, name):
        torch = self.torch
        if name == "fwd":
            with torch.no_grad():
                self.fn(self.x, self.W, self.b, **self.kw)
        elif name == "step":  # forward with autograd, then every gradient
            y = self.fn(self.x, self.W, self.b, **self.kw)
            torch.autograd.grad(y, [self.x, self.W, self.b], self.grad)
        else:  # backward alone, on a graph recorded once (not timed)
            if self._graph is None:
                self._graph = self.fn(self.x, self.W, self.b, **self.kw)
            wrt = [self.x] if name == "bwd_data" else [self.W, self.b]
            torch.autograd.grad(self._graph, wrt, self.grad, retain_graph=True)




def conv_transpose_model(spec):
    """A one-node ONNX model: ConvTranspose(X, W, B) with the layer's attributes, W and B as initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = spec.geometry()
    rng = np.random.default_rng(0)
    W = (0.1 * rng.standard_normal(spec.weight_shape())).astype(np.float32)
    b = np.zeros(spec.outmaps, np.float32)
    node = helper.make_node("ConvTranspose", ["X", "W", "B"], ["Y"], strides=list(g.stride),
                            pads=list(g.pad) * 2, dilations=list(g.dilation), group=g.groups,
                            output_padding=list(g.postpad))
    graph = helper.make_graph(
        [node], "deconv", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(spec.input_shape()))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [spec.batch, spec.outmaps]
                                       + list(g.out_spatial(spec.input_shape()[2:])))],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


class OnnxRuntimeLayer:
    name = "onnxruntime"
    passes = ("fwd",)

    def __init__(self, spec):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = THREADS
        self.session = onnxruntime.InferenceSession(conv_transpose_model(spec).SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])
        self.x = np.random.default_rng(0).standard_normal(spec.input_shape()).astype(np.float32)

    def run(self, name):
        self.session.run(None, {"X": self.x})


class OpenVinoLayer:
    name = "openvino"
    passes = ("fwd",)

    def __init__(self, spec):
        import onnx
        import openvino
        core = openvino.Core()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "deconv.onnx")
            onnx.save(conv_transpose_model(spec), path)
            model = core.read_model(path)
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": THREADS})
        self.request = self.compiled.create_infer_request()
        self.x = np.random.default_rng(0).standard_normal(spec.input_shape()).astype(np.float32)

    def run(self, name):
        self.request.infer({0: self.x})


def available(names, out=print, torch_device="cpu"):
    """{name: a factory spec -> runner} for the peers in `names` that import here; a line for each that does not.
    torch_device: "cuda" runs PyTorch on the GPU (to compare with this library on the same GPU)."""
    found = {}
    for name in names:
        try:
            if name == "torch":
                import torch
                torch.set_num_threads(THREADS)
                found[name] = lambda spec, torch=torch: TorchLayer(spec, torch, torch_device)
                out(f"peer: PyTorch {torch.__version__} on {torch_device} ({torch.get_num_threads()} CPU threads), "
                    "every pass")
            elif name == "onnxruntime":
                import onnx  # noqa: F401
                import onnxruntime
                found[name] = OnnxRuntimeLayer
                out(f"peer: ONNX Runtime {onnxruntime.__version__} ({THREADS} threads), forward")
            elif name == "openvino":
                import onnx  # noqa: F401
                import openvino
                found[name] = OpenVinoLayer
                out(f"peer: OpenVINO {openvino.__version__} ({THREADS} threads), forward")
            else:
                raise ValueError(f"unknown peer {name!r} (known: torch, onnxruntime, openvino)")
        except ImportError as e:
            out(f"peer {name} not installed ({e.name}): skipped")
    return found
