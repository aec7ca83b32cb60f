"""Training: the fitting loop with checkpoints, resume and fine-tuning, model.log, and the curves."""
