"""The pure part of the edge: arrays and documents in, arrays and documents out.

Nothing here opens a socket or a file, starts a thread or reads a clock it was not given.
"""
