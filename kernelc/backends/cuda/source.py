"""Rendering a kernel to CUDA C++: the layout knobs of a schedule, the jinja2 templates, and the
launch geometry of each generated function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator
from pathlib import Path

import jinja2

from kernelc.backends.cuda.codegen import STORAGE, Function, Generator, Layout
from kernelc.backends.interface import Schedule, Sizes
from kernelc.ir.nodes import Kernel
from kernelc.ir.passes.split_passes import Stage, split_passes

TEMPLATES = Path(__file__).parent / "templates"
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True)
CODEGEN_VERSION = "1"  # bump when generated code changes without the templates or the IR changing


def layout_of(schedule: Schedule) -> Layout:
    default = Layout()
    return Layout(block=int(schedule.get("block", default.block)), rows=int(schedule.get("rows", default.rows)),
                  tile=int(schedule.get("tile", default.tile)), stage=bool(schedule.get("stage", default.stage)),
                  split=int(schedule.get("split", default.split)))


def schedule_of(backend: str, sizes: Sizes, layout: Layout) -> Schedule:
    return Schedule.of(backend, dims=sizes.dims, block=layout.block, rows=layout.rows, tile=layout.tile,
                       stage=layout.stage, split=layout.split)


@dataclass
class Rendered:
    """One single-pass stage as CUDA C++: the source and its `__global__` functions."""

    stage: Stage
    source: str
    functions: list[Function]

    def launches(self, sizes: Sizes, layout: Layout) -> list["Launch"]:
        """Every function's launch, in order (none for a function with no rows)."""
        size = {"N": sizes.n, "M": sizes.m, "1": 1}
        found = []
        for function in self.functions:
            rows = size[function.rows_size]
            grid = -(-rows // (layout.block * len(function.rows)))
            if grid == 0:
                continue
            splits = layout.split if function.mode != "whole" else 1
            chunk = -(-size[function.inner_size] // splits)
            chunk = -(-chunk // layout.tile) * layout.tile  # whole tiles per block
            grid_y = splits if function.mode == "partial" else 1
            found.append(Launch(function, grid, grid_y, chunk, splits, splits * rows * function.state_bytes,
                                grid * grid_y * layout.block * function.scratch))
        return found

    def launches_with_buffers(self, sizes: Sizes, layout: Layout, empty) -> Iterator[tuple["Launch", Any, Any]]:
        """Every launch with its scratch buffer and the partial-state buffer it reads or writes:
        a "partial" launch gets a new one, which the "combine" launch after it reads. `empty(n)`
        allocates n bytes in the array library of the caller (CuPy on a GPU, NumPy emulated)."""
        states = empty(1)
        for launch in self.launches(sizes, layout):
            scratch = empty(max(1, launch.scratch_bytes))
            if launch.function.mode == "partial":
                states = empty(max(1, launch.state_bytes))
            yield launch, scratch, states


@dataclass(frozen=True)
class Launch:
    """One kernel launch: a grid of grid_x x grid_y blocks; `state_bytes` of partial states pass
    from a "partial" function to the "combine" one after it; `scratch_bytes` hold the long
    vectors of every thread."""

    function: Function
    grid_x: int
    grid_y: int
    chunk: int
    splits: int
    state_bytes: int
    scratch_bytes: int


def render_stage(stage: Stage, dims: dict[str, int], layout: Layout, prefix: str = "kc") -> Rendered:
    """`prefix` names the functions, so that several kernels can share one translation unit."""
    kernel = stage.kernel
    functions = Generator(kernel, dims, layout, prefix).functions()
    source = _ENV.get_template("kernel.cu.j2").render(
        functions=functions, tile=layout.tile,
        params=[{"storage": STORAGE[p.type.dtype]} for p in kernel.params],
        outputs=[{"storage": STORAGE[o.type.dtype]} for o in kernel.outputs])
    return Rendered(stage, f"/* kernelc {kernel.name}: {layout} */\n{source}", functions)


def render(kernel: Kernel, dims: dict[str, int], layout: Layout, prefix: str = "kc") -> list[Rendered]:
    """Every stage of `kernel` (a multi-pass kernel runs as several single-pass ones)."""
    return [render_stage(stage, dims, layout, f"{prefix}{k}") for k, stage in enumerate(split_passes(kernel))]
