"""``from astromodal.codecs import CodecManager`` (as in AION)."""

from astromodal_core.manager import CodecManager

__all__ = ["CodecManager"]
