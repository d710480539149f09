"""The outbound side of a node: the queue that per-destination senders work from."""
