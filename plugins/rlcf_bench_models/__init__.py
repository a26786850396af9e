"""Model backends: open_clip (tags and local files) and tiny random models for tests."""
