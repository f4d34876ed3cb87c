"""The astromodal end-to-end demo."""
