"""Internals of ``nnlite.optimize_for_inference``: tracing, graph passes, kernels, plans."""
