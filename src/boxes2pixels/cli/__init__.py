"""The ``b2p`` command line: a thin layer over the Python API."""
