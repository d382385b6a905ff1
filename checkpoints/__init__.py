"""The shipped default prior and its model card (installed as ``prior.checkpoints``)."""
