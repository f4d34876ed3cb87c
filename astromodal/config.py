"""``from astromodal.config import load_config``."""

from astromodal_core.config import Config, load_config

__all__ = ["Config", "load_config"]
