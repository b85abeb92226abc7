"""What an inference plan holds in memory, by category (``InferenceModule.memory_report``).

Every ndarray reachable from an object (attributes, containers, closures of bound calls) is
found and counted once per underlying buffer: two views of one buffer, or an array and the
bytes object it was read from, count once. This is how the tests check that a plan keeps no
weight twice, and how ``benchmarks/bench_inference.py`` explains its peak-memory column.

Categories of ``plan_memory``:

- ``constants``: the graph's constants (the model's weights as imported/traced; kept to
  compile plans for new input shapes) and the plan's folded constants that are not prepared
  forms (BatchNorm folded into conv weights, biases);
- ``prepared``: what kernels made of the weights (Winograd-transformed and packed weights,
  GEMM-packed weights): everything a kernel holds that shares no memory with a constant;
- ``arena``: the activation arena of each binding; ``scratch``: the scratch areas (column
  buffers, padded pool inputs) of each binding.
"""
import types

import numpy as np

__all__ = ["buffers", "nbytes", "plan_memory"]

_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type, types.ModuleType,
          types.BuiltinFunctionType, np.dtype, np.generic)


def _root(a):
    """(key, bytes) of the buffer holding ndarray ``a``: its base-most array, or the
    non-array object (bytes, mmap) that buffer came from."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    if a.base is None:
        return id(a), a.nbytes
    base = a.base
    try:
        size = memoryview(base).nbytes
    except TypeError:
        size = a.nbytes
    return id(base), size


def buffers(*objs, skip=()):
    """{buffer key: bytes} of every ndarray reachable from ``objs`` (objects whose id is in
    ``skip`` are not entered)."""
    seen, found = set(skip), {}
    stack = list(objs)
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, _ATOMS):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
                continue
            key, size = _root(o)
            found[key] = size
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, types.FunctionType):
            for cell in o.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:   # an empty cell
                    pass
            stack.extend(o.__dict__.values())
        elif isinstance(o, types.MethodType):
            stack.append(o.__self__)
        else:
            d = getattr(o, "__dict__", None)
            if isinstance(d, dict):
                stack.extend(d.values())
            for cls in type(o).__mro__:
                for s in getattr(cls, "__slots__", ()):
                    stack.append(getattr(o, s, None))
    return found


def nbytes(found):
    """Total bytes of a ``buffers`` result."""
    return sum(found.values())


def plan_memory(plans, constants=(), bindings=()):
    """Bytes by category (module doc) held by ``plans`` (a Plan or a list of them) with the
    ``constants`` (any object holding the model's weights: a dict of arrays, a Module, a
    cache) and ``bindings`` (results of ``Plan.bind()``: (inputs, outputs, calls)). A buffer
    counts once however many plans hold it."""
    plans = [plans] if hasattr(plans, "steps") else list(plans)
    const = buffers(constants, [p.consts for p in plans])
    steps = buffers([[s.kernel for s in p.steps] for p in plans], [p.groups for p in plans])
    prepared = {k: v for k, v in steps.items() if k not in const}
    work = {}
    for binding in bindings:
        work.update({k: v for k, v in buffers(binding).items()
                     if k not in const and k not in prepared})
    arena = sum(p.arena_bytes for p in plans) if bindings else 0
    return {"constants": nbytes(const), "prepared": nbytes(prepared), "arena": arena,
            "scratch": max(nbytes(work) - arena, 0)}
