"""Segmentation networks, built by name: `build_network("fracnet_unet", **hparams)`."""

from .registry import available_networks, build_network, register_network
from . import candidate_cnn, fracnet_unet, res_unet_ds, segresnet_vae, unet2d  # noqa: F401  (registers the built-ins)

__all__ = ["available_networks", "build_network", "register_network"]
