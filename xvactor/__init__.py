"""xvactor: an asyncio-native actor system that speaks DICOM."""

__all__ = ["__version__"]

__version__ = "0.1.0"
