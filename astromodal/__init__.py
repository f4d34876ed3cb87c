"""The astromodal facade: the import paths users know (``astromodal.tokenizers``, ``astromodal.config``)."""

from astromodal_core import CodecManager, __version__, get_registry

__all__ = ["CodecManager", "__version__", "get_registry"]
