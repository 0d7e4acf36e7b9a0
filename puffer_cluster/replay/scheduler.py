"""The replay's scheduler: `kernels.placement`, the one implementation (its Numba twin is
`kernels.simarena.place_nb`), under the replay's name."""
from kernels.placement import (  # noqa: F401
    BLOCKED_CPU, BLOCKED_MEM, BLOCKED_SLOT, MAX_POD_BYTES, MAX_POD_MILLICORES,
    NONZERO_CPU_MILLICORES, NONZERO_MEMORY_BYTES, NodeAllocations,
)
