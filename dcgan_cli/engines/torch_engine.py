"""The built-in torch engine: the PyTorch generator in eval mode, on the CPU or a CUDA device.

torch is imported by each method, not by the module: registering the engine (which every
`dcgan` command does) must not cost torch's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcgan_cli.core.console import note
from dcgan_cli.core.devices import cuda_graphs_for, inference_precision_for, resolve_device
from dcgan_cli.core.errors import DcganError
from dcgan_cli.engines.base import Engine, precision_dtype
from dcgan_cli.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 or AMX)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchEngine(Engine):
    """PyTorch generator in eval mode (BatchNorm uses its stored statistics).

    On the CPU: fp32, channels-last, inference mode, and bf16 where the CPU has bf16 dot
    products (AVX512-BF16, AMX: oneDNN runs them at twice the fp32 rate; 2.6x the example
    generator at batch 256 on the 2-core EPYC, README). On a CUDA device it also runs fp16 or
    bf16, and replays a CUDA graph per batch size (the first call of a size captures it), so
    a fixed-batch sampling loop costs one graph launch per batch instead of one launch per
    kernel. On Apple's MPS: fp32 or fp16 (bf16 falls back to fp16), no CUDA graphs.
    """

    NAME = "torch"
    DESCRIPTION = (
        "PyTorch on the CPU (fp32, bf16 where the CPU has it), a CUDA device (fp16/bf16, CUDA graphs) "
        "or Apple's MPS (fp16)"
    )
    PRECISIONS = ("fp32", "fp16", "bf16")
    AUTO_PRIORITY = 10
    MAX_GRAPHS = 8  # batch sizes whose CUDA graph is kept (a sampling run needs 1 or 2)

    def __init__(self, run_dir, *, device="auto", precision="fp32", cuda_graphs: bool = True, **options):
        import torch

        from dcgan_cli.core.networks import load_generator

        super().__init__(run_dir, device=device, precision=precision, **options)
        self.device = resolve_device(device)
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_bf16():
            raise DcganError(
                "this CPU has no bf16 dot products (AVX512-BF16 or AMX): use --precision fp32, "
                "or --precision int8 with an int8 export (`dcgan export --precision int8`)"
            )
        if precision == "fp16" and self.device.type == "cpu":
            raise DcganError(
                "the torch engine runs fp16 on a GPU only (CUDA, or Apple MPS); on the CPU use --precision fp32 "
                "or bf16 (or --engine onnxruntime with an fp16 export)"
            )
        # What MPS cannot run falls back, with one note each (core/devices.py).
        self.precision, why_precision = inference_precision_for(self.device.type, precision)
        self.use_graphs, why_graphs = cuda_graphs_for(self.device.type, cuda_graphs)
        for message in (why_precision, why_graphs):
            if message:
                note(message)
        self.dtype = precision_dtype(self.precision)
        netG = load_generator(self.run_dir, device=self.device)
        # channels-last convolutions are faster on both oneDNN (CPU) and cuDNN.
        self.netG = netG.to(dtype=self.dtype, memory_format=torch.channels_last)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None

    def describe(self) -> str:
        import torch

        if self.device.type == "cuda":
            where = torch.cuda.get_device_name(self.device)
        elif self.device.type == "mps":
            where = "Apple GPU (MPS)"
        else:
            where = f"CPU, {torch.get_num_threads()} threads"
        graphs = ", CUDA graphs" if self.use_graphs else ""
        return f"torch ({where}, {self.precision}, channels-last{graphs})"

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        import torch

        # fp32 means fp32: no TF32 convolutions, so every engine agrees within fp32 tolerance.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.netG(z)

    def _graph(self, n: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        import torch

        entry = self._graphs.get(n)
        if entry is not None:
            return entry
        if len(self._graphs) >= self.MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        static_z = torch.zeros(n, self.config.nz, device=self.device, dtype=self.dtype)
        # Warm up on a side stream (cuDNN picks its algorithms) before capturing, as CUDA graphs require.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(static_z)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_out = self._forward(static_z)
        entry = self._graphs[n] = (graph, static_z, static_out)
        return entry

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            z = z.to(self.device, self.dtype, non_blocking=True)
            if not self.use_graphs:
                return self._forward(z).float().cpu().contiguous()
            graph, static_z, static_out = self._graph(len(z))
            static_z.copy_(z)
            graph.replay()
            return static_out.float().cpu().contiguous()

    def close(self) -> None:
        self._graphs.clear()


@hookimpl
def dcgan_register_engines(register):
    register(TorchEngine)
