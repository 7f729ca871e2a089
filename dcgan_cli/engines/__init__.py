"""Generation: the Engine contract and registry, the torch engine, choosing and benchmarking engines, ONNX export, sampling to files."""
