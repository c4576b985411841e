"""Training of fracture networks: RibFrac-layout data, FracNet-style sampling, on-device augmentation,
losses, and a resumable loop validated with the real inference engine and the RibFrac evaluator."""
