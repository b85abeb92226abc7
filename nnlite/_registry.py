"""The one way nnlite registers handlers by name: ``Registry.register``, a decorator.

Every table that maps a name to the code handling it is a ``Registry``: the array kernels of
each backend (``nnlite.kernels``, keyed by (op, backend)), the ONNX ops of the Tensor executor
(``nnlite.onnx.ops.OPS``), the inference plan's kernel builders (``nnlite._infer.kernels``) and
the tracer's converters from nnlite Functions to graph nodes (``nnlite._infer.trace``). A
handler made by a factory registers with the same call: ``table.register("Name")(factory(...))``.
"""

__all__ = ["Registry"]


class Registry(dict):
    """A dict ``key -> handler`` filled through ``register``; ``what`` names the keys in errors."""

    def __init__(self, what):
        super().__init__()
        self.what = what

    def register(self, *keys, when=True):
        """Decorator: store the function under each of ``keys`` (nothing when ``when`` is
        false, e.g. a native kernel whose extension is not built). A key registered twice is a
        ValueError: two handlers claiming one name would make the table depend on import
        order."""
        def deco(fn):
            if when:
                for key in keys:
                    if key in self:
                        raise ValueError(f"{self.what} {key!r} is registered twice "
                                         f"({self[key].__qualname__} and {fn.__qualname__})")
                    self[key] = fn
            return fn
        return deco
