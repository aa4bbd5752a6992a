"""Sparkplug B input (the optional extra ``edgewatch[sparkplug]``: protobuf).

:mod:`.decoder` turns Sparkplug B messages into samples, offline devices and rebirth requests (pure);
:mod:`.source` wires it into the daemon's MQTT link. ``sparkplug_b_pb2`` is generated from
``sparkplug_b.proto`` (Eclipse Tahu's schema) at development time and committed; importing this package does
not import protobuf.
"""
