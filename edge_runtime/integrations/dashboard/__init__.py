"""``edgewatch dashboard``: a read-only live web view of what the daemons publish on MQTT.

- :mod:`.view`: the fleet as the documents describe it (gateways, devices, score history, open alerts, the
  alert log), versioned so a browser gets only what changed. No sockets, no threads of its own.
- :mod:`.server`: the MQTT subscription (``edge_runtime.tools.watch.Subscription``), a standard-library HTTP
  server with Server-Sent Events, and the click command.
- ``static/``: the page (hand-written HTML/CSS/JS, no CDN, no build step).

Standard library only: the ``dashboard`` extra adds no dependency.
"""
