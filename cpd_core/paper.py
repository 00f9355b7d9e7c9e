"""Numbers reported by the paper (Steier 2026, arXiv 2603.03155), for side-by-side comparison.

These are citations, not results: the book always shows them labelled "paper", next to the
numbers its own runs produce.
"""

#: (claim, representation, target, probe) -> value reported in the paper
PAPER = {
    ("r2_geom", "MACE", "gap", "ridge"): 0.782,
    ("r2_geom", "ANI-2x", "gap", "ridge"): -0.792,
    ("r2_geom", "ANI-2x", "gap", "mlp"): 0.784,
    ("r2_geom_tree_inflation_low", "compositional target", "-", "gbt"): 0.68,
    ("r2_geom_tree_inflation_high", "compositional target", "-", "gbt"): 0.95,
    ("r2_geom", "PaiNN gap-trained", "gap", "ridge"): 0.53,
    ("r2_geom", "PaiNN energy-trained", "gap", "ridge"): 0.31,
    ("r2_geom", "MACE gap-trained", "gap", "ridge"): 0.44,
    ("r2_geom", "MACE energy-trained", "gap", "ridge"): 0.08,
    ("r2_geom", "MACE-MP-0", "gap", "ridge"): 0.36,
    ("isomer_accuracy", "-", "-", "-"): 0.946,
    ("r2_geom", "MACE L1", "dipole", "ridge"): 0.59,
    ("r2_geom", "MACE L0", "dipole", "ridge"): 0.38,
    ("r2_geom", "MACE L0", "gap", "ridge"): 0.76,
    ("r2_geom", "MACE L1", "gap", "ridge"): 0.34,
    ("r2_geom_trained_low", "trained on QM9", "gap", "ridge"): 0.081,
    ("r2_geom_trained_high", "trained on QM9", "gap", "ridge"): 0.533,
    ("r2_geom_gap_trained_low", "gap-trained", "gap", "ridge"): 0.44,
    ("r2_geom_gap_trained_high", "gap-trained", "gap", "ridge"): 0.53,
}


def paper_value(claim: str, representation: str, target: str = "-", probe: str = "-") -> float:
    """The paper's number for one claim.

    >>> paper_value("r2_geom", "ANI-2x", "gap", "ridge")
    -0.792
    """
    return PAPER[(claim, representation, target, probe)]
