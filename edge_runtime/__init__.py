"""edgewatch edge runtime: scores MQTT sensor streams with an exported ONNX model. Never imports torch/onnx/trainer."""
