"""sparsecam export: checkpoint -> ONNX with in-graph pre/post-processing."""
