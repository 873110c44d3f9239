"""Configuration: loaded once at the edge (`load_config`) into an immutable `Config` and passed down."""
