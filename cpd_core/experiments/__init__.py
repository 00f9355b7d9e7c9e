"""One module per book chapter, named as the chapter's page (``book/NAME.md``), notebook
(``notebooks/NAME.py``) and tests (``tests/experiments/test_NAME.py``):

``method_known_answer`` — the method on synthetic data with planted answers; nonlinear-probe inflation.
``ani2x_aev``           — a first representation's CPD on QM9: ANI-2x's AEV.
``model_gradient``      — every model on QM9: the disentanglement gradient (nested block choice, twins).
``task_alignment``      — the same architectures trained here on the gap and on U0, probed on held-out molecules.

Shared: ``controls`` (control targets), ``scales`` (each chapter's parameters at the named scales).
"""
