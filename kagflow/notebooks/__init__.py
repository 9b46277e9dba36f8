"""The kernels kagflow renders: notebook templates, parameters cell, kernel folder."""
