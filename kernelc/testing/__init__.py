"""The conformance kit: the rules of LANGUAGE.md §6 as tests any backend must pass.

    KERNELC_TEST_BACKEND=mine pytest --pyargs kernelc.testing

runs them on the backend `mine` (a comma-separated list is fine; default: every available
backend, plus the NumPy backend with tiny tiles so that partial states are merged).
"""
