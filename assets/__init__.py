"""Small data that ships with dposer-view (installed as ``prior.assets``)."""
