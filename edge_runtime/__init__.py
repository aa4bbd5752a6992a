"""edgewatch edge runtime: scores MQTT sensor streams with an exported ONNX model. Never imports torch/onnx/trainer."""

# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
