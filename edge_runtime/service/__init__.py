"""The edge's I/O and threads: the ONNX session, the MQTT connection, and the daemon's parts.

A message's way: :mod:`.ingest` (decode, window) -> :mod:`.scorer` (batch, infer, decide) ->
:mod:`.publisher` (the only caller of the link's publish); :mod:`.housekeeping` (stats, expiry,
model file watch, reload); :mod:`.daemon` wires them.
"""
