"""Scanner-side streaming: ``recon serve`` (an MRD v1 socket server) and ``recon send`` (a client).

The protocol is the ISMRMRD/MRD v1 stream of Gadgetron and python-ismrmrd-server (Siemens FIRE):
message framing in ``recon.io.mrd_stream``, the socket in :mod:`.wire`, MRD images in :mod:`.images`,
one connection in :mod:`.connection`, the pipelines chosen by config name in :mod:`.pipelines`
(``recon-sense``, ``recon-cs``, ``recon-zf``, ``recon-realtime``, ``recon-net``), the spool that keeps every message
received in :mod:`.spool`, the server (main process + worker processes) in :mod:`.server` and the
client in :mod:`.client`. See docs/stream.md.

::

    from recon.stream import ServerConfig, serve, send
    serve(ServerConfig(port=9002, spool="spool"))                      # blocks until SIGTERM
    res = send("scan.h5", port=9002, config="recon-sense")              # from another process
    res.images, res.texts, res.latencies_ms
"""

_EXPORTS = {"send": "client", "SendResult": "client", "write_images": "client", "PIPELINES": "pipelines",
            "available": "pipelines", "ServerConfig": "server", "Server": "server", "serve": "server",
            "Spool": "spool", "recover": "spool"}
__all__ = list(_EXPORTS)


def __getattr__(name):  # lazy: `recon --help` imports the command modules only
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'recon.stream' has no attribute {name!r}")
