"""The training stages as pure functions; ``workflows/`` runs them as cached Prefect tasks.

``load`` (read and validate) → ``fit`` (preprocess, featurize, cluster, align) → ``evaluate`` (metrics) →
``assemble`` (the bundle, its drift reference; ``fit_model`` runs every stage in-process) → ``outputs``
(labels, metrics, profile, plots, report). ``rebuild`` renames segments or rebuilds a finished run's report.
"""
