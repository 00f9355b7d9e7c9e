"""Write cpd_core/models/trained/bessel_basis.json: torch-geometric's spherical Bessel forms for DimeNet++.

``torch_geometric.nn.models.dimenet_utils.bessel_basis(n, k)`` builds its forms with sympy's
``simplify`` (~25 s for DimeNet++'s 7 x 6 on one core). The table keeps sympy's exact ``srepr`` of each
form, so :func:`cpd_core.models.trained.pyg.shipped_bessel_basis` returns expressions equal to
sympy's own and a fresh machine builds DimeNet++ without the wait. Run it again (and commit the
table) when torch-geometric changes the forms: ``tests/models/test_pyg.py`` fails then.

Usage: python scripts/bessel_table.py [n,k ...]   (default: 7,6, DimeNet++'s num_spherical, num_radial)
"""

import json
import sys
from pathlib import Path

import sympy
import torch_geometric
from torch_geometric.nn.models.dimenet_utils import bessel_basis

OUT = Path(__file__).resolve().parents[1] / "cpd_core" / "models" / "trained" / "bessel_basis.json"


def main(settings):
    forms = {}
    for setting in settings:
        n, k = (int(v) for v in setting.split(","))
        forms[f"{n},{k}"] = [[sympy.srepr(f) for f in row] for row in bessel_basis(n, k)]
    OUT.write_text(json.dumps({"made with": {"torch_geometric": torch_geometric.__version__,
                                             "sympy": sympy.__version__},
                               "forms": forms}, indent=1) + "\n")
    print(f"wrote {OUT} ({', '.join(forms)})")


if __name__ == "__main__":
    main(sys.argv[1:] or ["7,6"])
