"""Generated kernels and data (kernelc/testing/programs.py) on the backend under test, judged
against a brute-force float64 evaluation on the materialized matrix."""

from hypothesis import HealthCheck, given, note, reject, settings

import kernelc as kc
from kernelc.testing.programs import Program, programs


@settings(max_examples=max(300, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(program=programs())
def test_generated_kernel_matches_brute_force(run, program: Program) -> None:
    note(program.source)
    kernel = kc.kernel(program.source)
    try:
        got = run(kernel, **program.data)
    except kc.UnsupportedKernelError:
        reject()  # allowed by the plugin API; a backend that supports nothing fails the health check
    program.check(got, reference=run.name.startswith("numpy"))
