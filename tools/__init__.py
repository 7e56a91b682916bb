"""Training and test-only code: not installed; run from the repository root
(`python -m tools.train_demo`, `python -m tools.camvid_model --data DIR`,
`python -m tools.instance_train OUT.pt`)."""
