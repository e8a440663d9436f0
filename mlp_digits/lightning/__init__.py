"""The Lightning side: DigitsMLP, the data module, the run, its checkpoints and pictures."""
