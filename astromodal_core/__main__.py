"""``python -m astromodal_core`` (and ``torchrun -m astromodal_core train ...``)."""

from .cli import main

if __name__ == "__main__":
    main()
