"""Tools the model can call. A new tool is one module implementing `Tool` (see `base`)."""
