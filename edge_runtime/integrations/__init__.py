"""Optional bridges to other systems: Home Assistant MQTT discovery, a Prometheus /metrics endpoint."""
