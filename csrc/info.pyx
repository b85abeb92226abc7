"""Build facts of the compiled extension: OpenMP on/off and its thread count."""

cdef extern from *:
    """
    #if NNLITE_OPENMP
    #include <omp.h>
    static int nnl_omp_max_threads(void) { return omp_get_max_threads(); }
    static int nnl_omp_enabled(void) { return 1; }
    #else
    static int nnl_omp_max_threads(void) { return 1; }
    static int nnl_omp_enabled(void) { return 0; }
    #endif
    """
    int nnl_omp_max_threads() noexcept nogil
    int nnl_omp_enabled() noexcept nogil


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(nnl_omp_enabled())


def openmp_max_threads():
    return nnl_omp_max_threads()
