"""The Mako templates of deconvnd_cl's kernels, installed as package data (see deconvnd_cl/render.py)."""
