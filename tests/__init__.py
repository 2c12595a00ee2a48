"""refracture tests."""
