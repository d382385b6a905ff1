"""dposer-view: the viser app around the prior library."""
