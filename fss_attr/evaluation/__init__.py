"""Evaluation runs: explainers × metrics over many episodes (the library side of ``fss-attr evaluate``), and
the writers of their reports (CSV, JSON, markdown table, curve figure)."""
