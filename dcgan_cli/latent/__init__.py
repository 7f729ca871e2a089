"""The paper's experiments in Z: walks, concepts and labelers, vector arithmetic, forgetting an object and its detectors."""
