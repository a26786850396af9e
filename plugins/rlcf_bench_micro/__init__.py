"""The embedded micro suite: generated data with controlled shifts and a small model zoo."""
