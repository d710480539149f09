"""Filing received instances into the data directory."""
