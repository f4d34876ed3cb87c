"""A third-party plugin installed as a real distribution (dist-info with an entry point)."""

from astromodal_core import TokenKey, hookimpl


@hookimpl
def astromodal_register_token_keys(register):
    register(TokenKey("tok_fake_w1", 65, mask_token=64, description="fake W1"))
