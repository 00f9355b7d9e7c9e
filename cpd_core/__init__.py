"""cpd_core: Composition Projection Decomposition of atomistic model features.

The public API (stable; the book, the tests and later chapters rely on it):

- :func:`composition_matrix` / :func:`composition` — what "composition" means, as a matrix;
- :func:`project_out` / :class:`CompositionProjector` — exact removal of its span;
- :func:`cpd` / :func:`cpd_table` — cross-validated R²_full, R²_comp, R²_geom with ridge (closed form), MLP or
  GBT probes, each with a 95 % interval (``CPDResult.ci``);
- :func:`compare` — the paired difference of two results on the same molecules, with its interval;
- :func:`best_block` — nested choice of the most informative block; :func:`scan_blocks` scans the blocks
  once for several targets, and :meth:`BlockScan.choose` chooses among any subset of them.

The CPD math needs only numpy, scipy and scikit-learn: it works on features from any source.
"""

import warnings

# torch-geometric imports tqdm.auto, which warns in a notebook without ipywidgets; the book's pages would
# show that warning under the first model cell. cpd_core's own progress bars are plain tqdm.
warnings.filterwarnings("ignore", message="IProgress not found")

from cpd_core.composition import Composition, composition, composition_matrix  # noqa: E402
from cpd_core.decomposition import CPDResult, cpd, cpd_table  # noqa: E402
from cpd_core.errors import InputError  # noqa: E402
from cpd_core.intervals import Comparison, compare  # noqa: E402
from cpd_core.selection import BlockChoice, BlockScan, best_block, scan_blocks  # noqa: E402
from cpd_core.projection import CompositionProjector, composition_rank, project_out  # noqa: E402

__all__ = [
    "Composition",
    "CompositionProjector",
    "BlockChoice",
    "BlockScan",
    "CPDResult",
    "Comparison",
    "InputError",
    "best_block",
    "compare",
    "composition",
    "composition_matrix",
    "composition_rank",
    "cpd",
    "cpd_table",
    "project_out",
    "scan_blocks",
]
__version__ = "0.1.0"
