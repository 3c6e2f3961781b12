"""sparsecam run time: capture -> onnxruntime -> masks on ZeroMQ. Never imports torch."""

__version__ = "0.1.0"
