"""edgewatch edge runtime: scores MQTT sensor streams with an exported ONNX model. Never imports torch/onnx/trainer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgewatch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"
