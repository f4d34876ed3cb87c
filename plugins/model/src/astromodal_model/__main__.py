"""``python -m astromodal_model train ...``: the ``astromodal`` command, for ``torchrun -m``."""

from astromodal_core.cli import main

if __name__ == "__main__":
    main()
