"""First-party tasks: classification, retrieval, captioning. One submodule per task."""
