"""The dataset stages, one module each, in the order a request flows through them."""
