"""One function per book result: each returns tables that a notebook shows and plots.

``known_answer``  — Method chapter: planted signals and nonlinear-probe inflation (synthetic).
``representation`` — a representation's CPD on QM9 (first chapter: ANI-2x's AEV).
"""
