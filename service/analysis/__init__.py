"""One computation per paper artefact, for every view of it (the report, the dashboard, the CLI).

Pure: plain rows, runs and metrics in (see ``common``), dataclasses and pandas out; no
database, no matplotlib, no Streamlit. The report draws these numbers with matplotlib and the
dashboard with Altair, so the two always agree.

- ``figure1``: Figure 1's points (the aggregation rule is in its docstring).
- ``theory``: Theorem 2.1's pairs and bound, f_avg's closed form (E1).
- ``table4``: Table 4's rows and Figure 2(c)'s top-k points (E3).
- ``gallery``: gallery groups and model labels (E4-E6, Figure 2a).
- ``claims``: claim verdicts with the scale of their evidence; ``scale``: that scale.
- ``evidence``: each claim's test and the verdicts of a family (Holm); ``stats``: intervals
  and exact tests; ``seeds``: result rows pooled over seeds (``results --over-seeds``).
- ``paper``: the paper's printed numbers (Tables 2, 3, 4 and its scale).
"""
